// Building, opening and removing a lab (lab.hpp). Faults are in lab_faults.cpp.
#include "lab/lab.hpp"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "io/sealed_packet.hpp"
#include "lab/network.hpp"

namespace keel::lab {

namespace {

using Clock = std::chrono::steady_clock;
constexpr Milliseconds kTeardownGrace{3000};
constexpr int kPrefixAttempts = 32;

void report(const LabOptions& options, const std::string& line) {
  if (options.progress) options.progress(line);
}

Result<std::string> this_executable() {
  std::error_code error;
  auto path = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return Error{"cannot find this executable: " + error.message()};
  return path.string();
}

Result<Ok> make_directory(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) {
    return Error{"cannot create directory " + path + ": " + std::strerror(errno)};
  }
  return Ok{};
}

// Picks the prefix and claims the lab directory (mkdir fails if another lab has it).
Result<LabState> claim_lab(const LabOptions& options) {
  const bool generated = options.prefix.empty();
  for (int attempt = 0; attempt < kPrefixAttempts; ++attempt) {
    const auto now = Clock::now().time_since_epoch();
    const std::string prefix =
        generated ? generate_prefix(static_cast<std::uint64_t>(::getpid()) + attempt,
                                    static_cast<std::uint64_t>(now.count()))
                  : options.prefix;
    if (auto valid = validate_prefix(prefix); !valid) return valid.error();
    const LabNames names(prefix);
    auto objects = find_lab_objects(names);
    if (!objects) return objects.error();
    const std::string dir = options.dir.empty() ? names.default_dir() : options.dir;
    if (!objects.value().empty()) {
      if (generated) continue;
      return Error{"a lab with prefix " + prefix + " exists; `keel lab down --prefix " + prefix +
                   "` removes it"};
    }
    if (::mkdir(dir.c_str(), 0755) == 0) {
      LabState state;
      state.prefix = prefix;
      state.dir = std::filesystem::absolute(dir).lexically_normal().string();
      return state;
    }
    if (errno == EEXIST && generated && options.dir.empty()) continue;
    return Error{"cannot create lab directory " + dir + ": " + std::strerror(errno)};
  }
  return Error{"no free lab prefix found"};
}

Result<Ok> check_options(const LabOptions& options) {
  if (options.hosts < 1 || options.hosts > kMaxLabHosts) {
    return Error{"a lab has 1 to " + std::to_string(kMaxLabHosts) + " hosts, not " +
                 std::to_string(options.hosts)};
  }
  if (auto reason = lab_unavailable_reason()) return Error{*reason};
  return Ok{};
}

// The last lines of a host's agent log, for error messages.
std::string log_tail(const std::string& path, std::size_t lines) {
  auto text = read_file(path);
  if (!text || text.value().empty()) return "(empty log)";
  const std::string& all = text.value();
  std::size_t start = all.size();
  for (std::size_t found = 0; start > 0 && found <= lines;) {
    if (all[--start] == '\n') ++found;
  }
  return all.substr(start == 0 ? 0 : start + 1);
}

}  // namespace

Result<Lab> Lab::up(const LabOptions& options) {
  if (auto checked = check_options(options); !checked) return checked.error();
  auto claimed = claim_lab(options);
  if (!claimed) return claimed.error();
  Lab lab(std::move(claimed.value()));
  auto built = lab.build(options);
  if (!built) {
    report(options, "failed; removing what was built");
    std::string message = built.error().message + "\n(logs kept in " + lab.dir() + ")";
    if (auto removed = lab.down(false); !removed) message += "\n" + removed.error().message;
    return Error{message};
  }
  return lab;
}

Result<Ok> Lab::build(const LabOptions& options) {
  LabState& state = state_;
  if (!options.keel_binary.empty()) {
    state.keel_binary = std::filesystem::absolute(options.keel_binary).string();
  } else {
    auto self = this_executable();
    if (!self) return self.error();
    state.keel_binary = self.value();
  }
  if (options.stand_in.empty() && ::access(state.keel_binary.c_str(), X_OK) != 0) {
    return Error{"cannot run keel binary " + state.keel_binary};
  }
  state.stand_in = options.stand_in;
  for (int index = 1; index <= options.hosts; ++index) {
    state.hosts.push_back(make_host_state(state.names(), state.dir, index));
    if (state.hosts.back().socket.size() >= sizeof(sockaddr_un::sun_path)) {
      return Error{"lab directory path too long for a control socket: " + state.dir};
    }
  }
  // Saved before any kernel object exists: from here on `keel lab down` can finish the job.
  if (auto saved = save(); !saved) return saved;
  if (options.on_claimed) options.on_claimed(state.dir, state.keel_binary);
  if (auto built = build_hosts(options); !built) return built;
  if (options.before_agents) {
    if (auto prepared = options.before_agents(state); !prepared) return prepared;
  }
  for (int index = 1; index <= options.hosts; ++index) {
    if (auto started = start_agent(index); !started) return started;
  }
  state.phase = LabPhase::up;
  if (auto saved = save(); !saved) return saved;
  if (!state.stand_in.empty()) return Ok{};

  report(options, "waiting for one view of all " + std::to_string(options.hosts) + " hosts");
  std::vector<int> all;
  for (int index = 1; index <= options.hosts; ++index) all.push_back(index);
  auto view = wait_for_view(all, options.formation_timeout);
  if (!view) return view.error();
  report(options, "ring " + view.value().ring + " formed in " +
                      std::to_string(view.value().waited.count()) + " ms");
  return Ok{};
}

Result<Ok> Lab::build_hosts(const LabOptions& options) {
  const LabNames names = state_.names();
  report(options, "bridge " + names.bridge());
  if (auto made = create_bridge(names); !made) return made;
  for (int index = 1; index <= options.hosts; ++index) {
    const HostState& host = state_.host(index);
    report(options, "host " + host.name + ": namespace " + host.netns + ", " + host.address);
    if (auto made = create_host_network(names, index); !made) return made;
    if (auto made = make_directory(host.dir, 0755); !made) return made;
  }
  if (options.client) {
    report(options, "client: namespace " + names.client_netns() + ", " + kClientAddress);
    if (auto made = create_client_network(names); !made) return made;
    state_.client = true;
    if (auto saved = save(); !saved) return saved;
  }
  if (auto applied = apply_faults(NetworkFaults{}); !applied) return applied;
  if (auto key = io::write_new_key_file(key_path(state_.dir)); !key) return key;
  for (int index = 1; index <= options.hosts; ++index) {
    const std::string text = host_config_toml(state_, index, options.config);
    if (auto written = write_file_atomically(state_.host(index).config, text, 0644); !written) {
      return written;
    }
  }
  return Ok{};
}

Result<Lab> Lab::open(const std::string& dir) {
  auto state = load_state(dir);
  if (!state) return state.error();
  return Lab(std::move(state.value()));
}

Result<std::string> Lab::locate(const std::string& dir, const std::string& prefix) {
  if (!dir.empty()) {
    if (::access(state_path(dir).c_str(), F_OK) != 0) {
      return Error{"no lab found in " + dir + "; run `keel lab up` first"};
    }
    return dir;
  }
  if (!prefix.empty()) {
    if (auto valid = validate_prefix(prefix); !valid) return valid.error();
    return locate(LabNames(prefix).default_dir(), "");
  }
  const std::filesystem::path base = std::filesystem::path(kDefaultDirBase).parent_path();
  const std::string stem = std::filesystem::path(kDefaultDirBase).filename().string();
  std::vector<std::string> found;
  std::error_code error;
  std::filesystem::directory_iterator entries(base, error);
  for (; !error && entries != std::filesystem::directory_iterator(); entries.increment(error)) {
    const std::string path = entries->path().string();
    if (entries->path().filename().string().rfind(stem, 0) == 0 &&
        ::access(state_path(path).c_str(), F_OK) == 0) {
      found.push_back(path);
    }
  }
  std::sort(found.begin(), found.end());
  if (found.empty()) {
    return Error{"no lab found in " + std::string(kDefaultDirBase) + "*; run `keel lab up` first"};
  }
  if (found.size() > 1) {
    std::string list;
    for (const auto& path : found) list += "\n  " + path;
    return Error{"several labs found; choose one with --dir or --prefix:" + list};
  }
  return found.front();
}

Result<Ok> Lab::down(bool remove_dir) {
  std::vector<ProcessId> processes = state_.helpers;
  for (const auto& host : state_.hosts) processes.push_back(host.agent);
  terminate_all(processes, kTeardownGrace);
  for (auto& host : state_.hosts) {
    host.agent = ProcessId{};
    host.frozen = false;
  }
  state_.helpers.clear();
  auto removed = remove_lab_network(state_.names(), kTeardownGrace);
  state_.faults = NetworkFaults{};
  state_.phase = LabPhase::down;
  if (!removed) {
    auto saved = save();
    return removed;
  }
  if (remove_dir) {
    std::error_code error;
    std::filesystem::remove_all(state_.dir, error);
    if (error) return Error{"cannot remove " + state_.dir + ": " + error.message()};
    return Ok{};
  }
  return save();
}

std::vector<int> Lab::running_hosts() const {
  std::vector<int> hosts;
  for (const auto& host : state_.hosts) {
    if (is_running(host.agent)) hosts.push_back(host.index);
  }
  return hosts;
}

Result<AgentView> Lab::agent_view(int index) const {
  return query_agent_view(state_.keel_binary, host(index).socket, Milliseconds{2000});
}

Result<CommonView> Lab::wait_for_view(const std::vector<int>& hosts, Milliseconds timeout) const {
  KEEL_ASSERT(!hosts.empty());
  const auto start = Clock::now();
  std::vector<int> wanted = hosts;
  std::sort(wanted.begin(), wanted.end());
  std::string last;
  while (true) {
    last.clear();
    std::optional<std::string> common_ring;
    bool agreed = true;
    for (int index : wanted) {
      auto view = agent_view(index);
      const bool good = view && view.value().operational() && view.value().members == wanted &&
                        (!common_ring || *common_ring == view.value().ring);
      if (view && !common_ring) common_ring = view.value().ring;
      agreed = agreed && good;
      last +=
          "\n  " + host(index).name + ": " + (view ? describe(view.value()) : view.error().message);
    }
    const auto waited = std::chrono::duration_cast<Milliseconds>(Clock::now() - start);
    if (agreed) return CommonView{common_ring.value_or(""), wanted, waited};
    if (waited >= timeout) {
      std::string tails;
      for (int index : wanted) {
        tails += "\n--- " + host(index).log + " (end):\n" + log_tail(host(index).log, 6);
      }
      return Error{"no common view of hosts after " + std::to_string(timeout.count()) +
                   " ms; last seen:" + last + tails};
    }
    std::this_thread::sleep_for(Milliseconds{50});
  }
}

}  // namespace keel::lab
