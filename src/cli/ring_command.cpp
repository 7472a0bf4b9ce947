// `keel ring send` and `keel ring listen`: the ring's process groups from the shell, through the
// local agent's control socket (the Spread user's spuser, and what the end-to-end tests use).
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/control_client.hpp"
#include "agent/control_protocol.hpp"
#include "cli/commands.hpp"
#include "cli/control_options.hpp"

namespace keel::cli {

using nlohmann::json;

namespace {

constexpr int kReplyTimeoutMs = 5000;

struct SendFlags {
  ControlOptions control;
  std::string group;
  std::string message;
  bool safe = false;
};

struct ListenFlags {
  ControlOptions control;
  std::string group;
  bool json = false;
};

int fail(const char* command, const std::string& message) {
  fmt::print(stderr, "keel ring {}: {}\n", command, message);
  return 1;
}

Result<agent::ControlClient> connect(const ControlOptions& options) {
  auto path = agent::control_socket_path(options.config_path(), options.socket_path());
  if (!path.ok()) return path.error();
  return agent::ControlClient::connect(path.value());
}

std::string error_of(const json& reply) {
  const auto error = reply.find("error");
  return error != reply.end() && error->is_string() ? error->get<std::string>()
                                                    : "the agent refused the request";
}

int run_send(const SendFlags& flags) {
  auto client = connect(flags.control);
  if (!client.ok()) return fail("send", client.error().message);
  client.value().set_timeout_ms(kReplyTimeoutMs);
  json request{{"op", "send"}, {"group", flags.group}, {"safe", flags.safe}};
  agent::put_payload(request, std::span(reinterpret_cast<const std::uint8_t*>(flags.message.data()),
                                        flags.message.size()));
  auto reply = client.value().request(request);
  if (!reply.ok()) return fail("send", reply.error().message);
  if (reply.value().value("ok", false) != true) return fail("send", error_of(reply.value()));
  return 0;
}

std::string id_list(const json& ids) {
  std::string out;
  for (const json& id : ids) out += (out.empty() ? "" : " ") + id.dump();
  return "[" + out + "]";
}

// Message text on one line: control characters escaped.
std::string printable(const std::string& text) {
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  return out;
}

std::string human_line(const json& event) {
  const std::string kind = event.value("event", "");
  if (kind == "view") {
    const std::string from = event.value("kind", "") == "transitional"
                                 ? " from " + event.value("previous_ring", std::string("?"))
                                 : "";
    return fmt::format("view {} {}{} {}", event.value("kind", "?"), event.value("ring", "?"), from,
                       id_list(event.value("members", json::array())));
  }
  if (kind == "group_view") {
    return fmt::format("group {} {} joined {} left {}", event.value("group", "?"),
                       id_list(event.value("members", json::array())),
                       id_list(event.value("joined", json::array())),
                       id_list(event.value("left", json::array())));
  }
  if (kind == "message") {
    const std::string origin = event.value("origin", json()).dump();
    if (event.contains("message_base64")) {
      return fmt::format("message {} from {} (base64): {}", event.value("group", "?"), origin,
                         event.value("message_base64", ""));
    }
    return fmt::format("message {} from {}: {}", event.value("group", "?"), origin,
                       printable(event.value("message", "")));
  }
  return agent::to_line(event);
}

int run_listen(const ListenFlags& flags) {
  auto client = connect(flags.control);
  if (!client.ok()) return fail("listen", client.error().message);
  auto reply = client.value().request(json{{"op", "listen"}, {"group", flags.group}});
  if (!reply.ok()) return fail("listen", reply.error().message);
  if (reply.value().value("ok", false) != true) return fail("listen", error_of(reply.value()));
  for (;;) {
    auto line = client.value().read_line();
    if (!line.ok()) return fail("listen", line.error().message);
    const json event = json::parse(line.value(), nullptr, false);
    if (event.is_discarded() || !event.is_object()) return fail("listen", "bad event line");
    if (event.contains("ok")) return fail("listen", error_of(event));  // the agent's last word
    const std::string out = flags.json ? line.value() : human_line(event);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);  // one line per event as it happens, even into a pipe or a file
  }
}

void add_send(CLI::App& ring, int& exit_code) {
  auto flags = std::make_shared<SendFlags>();
  CLI::App* send = ring.add_subcommand(
      "send",
      "Send MESSAGE to GROUP through the local agent. Every host with a listener on GROUP "
      "delivers it, all in the same order. Returns once the agent queued it.");
  send->add_option("group", flags->group, "The group (printable ASCII, no spaces)")->required();
  send->add_option("message", flags->message, "The message (up to 1 MiB)")->required();
  send->add_flag("--safe", flags->safe,
                 "Safe delivery: delivered only once every member of the view holds it");
  add_control_options(*send, flags->control);
  send->callback([flags, &exit_code] { exit_code = run_send(*flags); });
}

void add_listen(CLI::App& ring, int& exit_code) {
  auto flags = std::make_shared<ListenFlags>();
  CLI::App* listen = ring.add_subcommand(
      "listen",
      "Join GROUP on this host and print, one line each as they are delivered, the ring's views, "
      "GROUP's membership changes and its messages, until interrupted. Lines look like\n"
      "  view regular 12.1 [1 2 3]\n  group g [1 2 3] joined [3] left []\n"
      "  message g from 2: text\nWith --json, one JSON object per line "
      "(docs/control-protocol.md).");
  listen->add_option("group", flags->group, "The group (printable ASCII, no spaces)")->required();
  listen->add_flag("--json", flags->json, "Print the agent's JSON events");
  add_control_options(*listen, flags->control);
  listen->callback([flags, &exit_code] { exit_code = run_listen(*flags); });
}

}  // namespace

void register_ring_command(CLI::App& app, int& exit_code) {
  CLI::App* ring = app.add_subcommand(
      "ring", "Send to and listen on the ring's process groups through the local agent.");
  ring->require_subcommand(1);
  add_send(*ring, exit_code);
  add_listen(*ring, exit_code);
}

}  // namespace keel::cli
