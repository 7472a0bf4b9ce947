#include "lab/agent_status.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

namespace keel::lab {

namespace {

using nlohmann::json;

// A member is a node id, or a node name "hI" (lab host I has id I).
int member_id(const json& member) {
  if (member.is_number_integer()) return member.get<int>();
  if (member.is_object() && member.contains("id")) return member_id(member.at("id"));
  if (member.is_string()) {
    std::string text = member.get<std::string>();
    if (!text.empty() && text.front() == 'h') text.erase(0, 1);
    try {
      return std::stoi(text);
    } catch (const std::exception&) {
    }
  }
  return 0;
}

std::string ring_text(const json& ring) {
  if (ring.is_null()) return "";
  if (ring.is_string()) return ring.get<std::string>();
  if (ring.is_object() && ring.contains("seq") && ring.contains("rep")) {
    return std::to_string(ring.at("seq").get<std::uint64_t>()) + "." +
           std::to_string(ring.at("rep").get<std::uint64_t>());
  }
  return ring.dump();
}

}  // namespace

Result<AgentView> parse_agent_status(const std::string& json_text) {
  AgentView view;
  try {
    const json status = json::parse(json_text);
    // The view may be the top level or an object of its own.
    const json& source =
        status.contains("view") && status.at("view").is_object() ? status.at("view") : status;
    const auto find = [&](const char* key) -> const json* {
      if (source.contains(key)) return &source.at(key);
      if (status.contains(key)) return &status.at(key);
      return nullptr;
    };
    if (const json* state = find("state"); state && state->is_string()) {
      view.state = state->get<std::string>();
    }
    if (const json* ring = find("ring")) view.ring = ring_text(*ring);
    if (const json* members = find("members"); members && members->is_array()) {
      for (const auto& member : *members) view.members.push_back(member_id(member));
    }
  } catch (const std::exception& error) {
    return Error{std::string("unreadable `keel status --json` output: ") + error.what()};
  }
  std::sort(view.members.begin(), view.members.end());
  return view;
}

Result<AgentView> query_agent_view(const std::string& keel_binary, const std::string& socket,
                                   Milliseconds timeout) {
  auto result = run_capture({keel_binary, "status", "--json", "--socket", socket}, timeout);
  if (!result) return result.error();
  if (result.value().exit_code != 0) {
    // `keel status` explains itself ("no agent control socket at ..."); keep just that.
    std::string err = result.value().err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
    return Error{err.empty() ? "keel status failed" : err};
  }
  return parse_agent_status(result.value().out);
}

Result<Ok> wait_for_control_socket(const std::string& path, const ProcessId& agent,
                                   Milliseconds timeout) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  KEEL_ASSERT(path.size() < sizeof address.sun_path);
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Error{std::string("socket: ") + std::strerror(errno)};
    const bool connected =
        ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
    ::close(fd);
    if (connected) return Ok{};
    if (!is_running(agent)) return Error{"the agent exited while starting"};
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error{"the agent's control socket " + path + " did not open within " +
                   std::to_string(timeout.count()) + " ms"};
    }
    std::this_thread::sleep_for(Milliseconds{5});
  }
}

std::string describe(const AgentView& view) {
  std::string text = (view.state.empty() ? "no state" : view.state) + ", ring " +
                     (view.ring.empty() ? "?" : view.ring) + ", members";
  for (int member : view.members) text += " " + std::to_string(member);
  return text;
}

}  // namespace keel::lab
