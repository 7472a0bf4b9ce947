#include "lab/state.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace keel::lab {

namespace {

using nlohmann::json;

json to_json_value(const ProcessId& process) {
  return json{{"pid", process.pid}, {"start_time", process.start_time}};
}

ProcessId process_from(const json& value) {
  return ProcessId{value.at("pid").get<int>(), value.at("start_time").get<std::uint64_t>()};
}

json to_json_value(const HostState& host) {
  return json{{"index", host.index},     {"name", host.name},
              {"netns", host.netns},     {"veth", host.veth},
              {"address", host.address}, {"dir", host.dir},
              {"config", host.config},   {"socket", host.socket},
              {"log", host.log},         {"agent", to_json_value(host.agent)},
              {"link_up", host.link_up}, {"frozen", host.frozen}};
}

HostState host_from(const json& value) {
  HostState host;
  host.index = value.at("index").get<int>();
  host.name = value.at("name").get<std::string>();
  host.netns = value.at("netns").get<std::string>();
  host.veth = value.at("veth").get<std::string>();
  host.address = value.at("address").get<std::string>();
  host.dir = value.at("dir").get<std::string>();
  host.config = value.at("config").get<std::string>();
  host.socket = value.at("socket").get<std::string>();
  host.log = value.at("log").get<std::string>();
  host.agent = process_from(value.at("agent"));
  host.link_up = value.at("link_up").get<bool>();
  host.frozen = value.at("frozen").get<bool>();
  return host;
}

json faults_value(const NetworkFaults& faults) {
  json cuts = json::array();
  for (const auto& [from, to] : faults.cuts) cuts.push_back(json::array({from, to}));
  return json{
      {"partition", faults.partition}, {"cuts", cuts}, {"loss_percent", faults.loss_percent}};
}

NetworkFaults faults_from(const json& value) {
  NetworkFaults faults;
  faults.partition = value.at("partition").get<std::vector<std::vector<int>>>();
  for (const auto& cut : value.at("cuts")) {
    faults.cuts.emplace_back(cut.at(0).get<int>(), cut.at(1).get<int>());
  }
  faults.loss_percent = value.at("loss_percent").get<int>();
  return faults;
}

LabPhase phase_from(const std::string& name) {
  if (name == "up") return LabPhase::up;
  if (name == "down") return LabPhase::down;
  if (name == "building") return LabPhase::building;
  throw std::invalid_argument("unknown phase '" + name + "'");
}

// The invariants of the header: nothing in the file may name objects outside the lab.
Result<Ok> check_state(const LabState& state) {
  if (auto valid = validate_prefix(state.prefix); !valid) return valid.error();
  if (state.host_count() > kMaxLabHosts) return Error{"more than 28 hosts"};
  const LabNames names(state.prefix);
  for (int index = 1; index <= state.host_count(); ++index) {
    const HostState& host = state.hosts[static_cast<std::size_t>(index - 1)];
    const HostState expected = make_host_state(names, state.dir, index);
    if (host.index != index || host.netns != expected.netns || host.veth != expected.veth ||
        host.address != expected.address || host.name != expected.name) {
      return Error{"host " + std::to_string(index) + " does not match the lab's names"};
    }
  }
  if (state.faults.loss_percent < 0 || state.faults.loss_percent > 100) {
    return Error{"loss_percent out of range"};
  }
  return Ok{};
}

}  // namespace

HostState& LabState::host(int index) {
  KEEL_ASSERT(index >= 1 && index <= host_count());
  return hosts[static_cast<std::size_t>(index - 1)];
}

const HostState& LabState::host(int index) const {
  KEEL_ASSERT(index >= 1 && index <= host_count());
  return hosts[static_cast<std::size_t>(index - 1)];
}

HostState make_host_state(const LabNames& names, const std::string& dir, int index) {
  HostState host;
  host.index = index;
  host.name = LabNames::host(index);
  host.netns = names.netns(index);
  host.veth = names.veth(index);
  host.address = LabNames::address(index);
  host.dir = dir + "/" + host.name;
  host.config = host.dir + "/keel.toml";
  host.socket = host.dir + "/keel.sock";
  host.log = host.dir + "/agent.log";
  return host;
}

std::string phase_name(LabPhase phase) {
  switch (phase) {
    case LabPhase::building:
      return "building";
    case LabPhase::up:
      return "up";
    case LabPhase::down:
      return "down";
  }
  return "?";
}

std::string state_path(const std::string& dir) { return dir + "/lab.json"; }

std::string to_json(const LabState& state) {
  json hosts = json::array();
  for (const auto& host : state.hosts) hosts.push_back(to_json_value(host));
  json helpers = json::array();
  for (const auto& helper : state.helpers) helpers.push_back(to_json_value(helper));
  const json value{{"version", LabState::kVersion},
                   {"prefix", state.prefix},
                   {"dir", state.dir},
                   {"keel_binary", state.keel_binary},
                   {"stand_in", state.stand_in},
                   {"phase", phase_name(state.phase)},
                   {"bridge", state.names().bridge()},
                   {"nft_table", state.names().table()},
                   {"hosts", hosts},
                   {"client", state.client},
                   {"faults", faults_value(state.faults)},
                   {"helpers", helpers}};
  return value.dump(2) + "\n";
}

Result<LabState> parse_state(const std::string& text, const std::string& source) {
  LabState state;
  try {
    const json value = json::parse(text);
    if (value.at("version").get<int>() != LabState::kVersion) {
      return Error{source + ": unsupported lab state version"};
    }
    state.prefix = value.at("prefix").get<std::string>();
    state.dir = value.at("dir").get<std::string>();
    state.keel_binary = value.at("keel_binary").get<std::string>();
    state.stand_in = value.at("stand_in").get<std::vector<std::string>>();
    state.phase = phase_from(value.at("phase").get<std::string>());
    for (const auto& host : value.at("hosts")) state.hosts.push_back(host_from(host));
    state.client = value.value("client", false);
    state.faults = faults_from(value.at("faults"));
    for (const auto& helper : value.at("helpers")) state.helpers.push_back(process_from(helper));
  } catch (const std::exception& error) {
    return Error{source + ": not a lab state file: " + error.what()};
  }
  if (auto checked = check_state(state); !checked) {
    return Error{source + ": " + checked.error().message};
  }
  return state;
}

Result<Ok> save_state(const LabState& state) {
  KEEL_ASSERT(check_state(state).ok());
  return write_file_atomically(state_path(state.dir), to_json(state), 0644);
}

Result<LabState> load_state(const std::string& dir) {
  const std::string path = state_path(dir);
  auto text = read_file(path);
  if (!text) return text.error();
  return parse_state(text.value(), path);
}

Result<Ok> write_file_atomically(const std::string& path, const std::string& text, int mode) {
  const std::string temporary = path + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Error{"cannot write " + temporary + ": " + std::strerror(errno)};
  std::size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return Error{"cannot write " + temporary + ": " + std::strerror(error)};
    }
    written += static_cast<std::size_t>(n);
  }
  ::fchmod(fd, static_cast<mode_t>(mode));
  ::close(fd);
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    return Error{"cannot rename " + temporary + ": " + std::strerror(errno)};
  }
  return Ok{};
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return Error{"cannot read " + path + ": " + std::strerror(errno)};
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace keel::lab
