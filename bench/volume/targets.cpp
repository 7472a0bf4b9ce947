#include "targets.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <thread>

#include "agent/control_client.hpp"
#include "config/volume_config.hpp"
#include "lab/process.hpp"

namespace keel::bench {
namespace {

using nlohmann::json;

constexpr Milliseconds kStopGrace{10000};

// A fresh file with its space reserved, as `keel volume create` makes keel's backing files, so
// that the three targets write into the same kind of file.
Result<Ok> make_reserved_file(const std::string& path, std::uint64_t size) {
  std::error_code error;
  std::filesystem::remove(path, error);
  if (auto made = run_tool({"fallocate", "-l", std::to_string(size), path}, Milliseconds{10000});
      !made) {
    return made.error();
  }
  return Ok{};
}

// Waits until an NBD client can open `uri` (nbdinfo), or the deadline.
Result<Ok> wait_serving(const std::string& uri, Milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string last;
  while (Clock::now() < deadline && !interrupted()) {
    auto probed = run_tool({"nbdinfo", "--size", uri}, Milliseconds{5000});
    if (probed) return Ok{};
    last = probed.error().message;
    std::this_thread::sleep_for(Milliseconds{50});
  }
  return Error{"nothing serves " + uri + ": " + last};
}

class NbdkitTarget final : public Target {
 public:
  explicit NbdkitTarget(const Options& options)
      : options_(options),
        file_(options.work_dir + "/nbdkit.img"),
        socket_(options.work_dir + "/nbdkit.sock") {}
  ~NbdkitTarget() override { stop(); }

  std::string name() const override { return "nbdkit"; }
  std::string describe() const override {
    return "nbdkit file plugin, default threads, one copy on " + file_;
  }
  Result<Ok> start() override {
    if (auto made = make_reserved_file(file_, options_.size); !made) return made;
    lab::SpawnOptions spawn_options;
    spawn_options.output_path = options_.work_dir + "/nbdkit.log";
    auto started = lab::spawn({"nbdkit", "-f", "-U", socket_, "file", file_}, spawn_options);
    if (!started) return started.error();
    process_ = started.value();
    return wait_serving(uri(), Milliseconds{10000});
  }
  void stop() override {
    if (process_.valid()) {
      lab::send_signal(process_, SIGTERM);
      if (!lab::wait_gone(process_, kStopGrace)) {
        lab::send_signal(process_, SIGKILL);
        lab::wait_gone(process_, kStopGrace);
      }
      process_ = {};
    }
    std::error_code error;
    std::filesystem::remove(file_, error);
    std::filesystem::remove(socket_, error);
  }
  std::string uri() const override { return "nbd+unix:///?socket=" + socket_; }
  std::string socket() const override { return socket_; }
  std::string file() const override { return ""; }
  int server_pid() const override { return process_.pid; }

 private:
  const Options& options_;
  std::string file_, socket_;
  lab::ProcessId process_;
};

class RawTarget final : public Target {
 public:
  explicit RawTarget(const Options& options)
      : options_(options), file_(options.work_dir + "/raw.img") {}
  ~RawTarget() override { stop(); }

  std::string name() const override { return "raw"; }
  std::string describe() const override { return "the file " + file_ + " itself"; }
  Result<Ok> start() override { return make_reserved_file(file_, options_.size); }
  void stop() override {
    std::error_code error;
    std::filesystem::remove(file_, error);
  }
  std::string uri() const override { return ""; }
  std::string socket() const override { return ""; }
  std::string file() const override { return file_; }
  int server_pid() const override { return 0; }

 private:
  const Options& options_;
  std::string file_;
};

std::string volume_toml(std::uint64_t size, int activity_log_extents, int busy_poll_us,
                        bool write_cache) {
  std::string tuning =  // keel's defaults unless the bench was told otherwise
      activity_log_extents == 0
          ? std::string()
          : "activity_log_extents = " + std::to_string(activity_log_extents) + "\n";
  if (busy_poll_us >= 0) tuning += "busy_poll_us = " + std::to_string(busy_poll_us) + "\n";
  if (!write_cache) tuning += "write_cache = false\n";
  return "[[volume]]\n"
         "name = \"data\"\n"
         "nodes = [\"h1\", \"h2\"]\n"
         "size = " +
         std::to_string(size) +
         "\n"
         "mode = \"sync\"\n"
         "backing = \"{host}/data.img\"\n"
         "metadata = \"{host}/data.keelmeta\"\n"
         "nbd_socket = \"{host}/nbd-data.sock\"\n"
         "replication_port = 7789\n"
         "resync_rate = 0\n" +
         tuning;
}

}  // namespace

std::unique_ptr<Target> make_nbdkit_target(const Options& options) {
  return std::make_unique<NbdkitTarget>(options);
}
std::unique_ptr<Target> make_raw_target(const Options& options) {
  return std::make_unique<RawTarget>(options);
}

bool in_sync_primary(const json& s) {
  return s.value("link", "") == "Connected" && s.value("role", "") == "Primary" &&
         s.value("disk", "") == "UpToDate" && s.value("out_of_sync_bytes", 1ull) == 0 &&
         !s.value("suspended", true);
}

std::string KeelTarget::describe() const {
  return "keel volume, sync mode, 2 copies (h1, h2) + witness h3, activity_log_extents " +
         (options_.activity_log_extents == 0
              ? std::to_string(config::kDefaultActivityLogExtents) + " (default)"
              : std::to_string(options_.activity_log_extents)) +
         ", busy_poll_us " +
         (options_.busy_poll_us < 0 ? std::to_string(config::kDefaultBusyPollUs) + " (default)"
                                    : std::to_string(options_.busy_poll_us)) +
         (options_.write_cache ? "" : ", write_cache = false") + ", exported on h" +
         std::to_string(primary_);
}

Result<Ok> KeelTarget::start() {
  lab::LabOptions lab_options;
  lab_options.hosts = 3;
  lab_options.keel_binary = options_.keel;
  lab_options.config.log_level = "warn";
  lab_options.config.extra = volume_toml(options_.size, options_.activity_log_extents,
                                         options_.busy_poll_us, options_.write_cache);
  lab_options.progress = [](const std::string& line) { std::cerr << "lab: " << line << "\n"; };
  lab_options.on_claimed = [this](const std::string& dir, const std::string& binary) {
    if (auto armed = lab::CleanupGuard::arm(binary, dir)) guard_.emplace(std::move(armed.value()));
  };
  const std::string keel = options_.keel;
  lab_options.before_agents = [keel](const lab::LabState& state) -> Result<Ok> {
    for (int host : {1, 2}) {
      auto created =
          run_tool({keel, "volume", "create", kVolume, "--config", state.host(host).config},
                   Milliseconds{60000});
      if (!created) return created.error();
    }
    return Ok{};
  };
  auto made = lab::Lab::up(lab_options);
  if (!made) return made.error();
  lab_.emplace(std::move(made.value()));
  primary_ = 1;
  // New copies are promoted once they have met (a new copy alone may be a replaced disk).
  auto met = wait_status(
      1, [](const json& s) { return s.value("link", "") == "Connected"; }, "the copies connected",
      Milliseconds{60000});
  if (!met) return met.error();
  if (auto promoted = volume_command(1, {"promote", kVolume}); !promoted) return promoted.error();
  return wait_in_sync(1, 2, Milliseconds{60000});
}

void KeelTarget::stop() {
  if (!lab_) return;
  std::error_code error;
  // The backing files are as large as the volume: never kept, even with the logs.
  for (int host : {1, 2}) std::filesystem::remove(backing_of(host), error);
  const bool keep = keep_logs_;
  const std::string dir = lab_->dir();
  auto down = lab_->down(!keep);
  if (down && guard_) guard_->disarm();
  if (!down) std::cerr << "keel_volume_bench: lab down: " << down.error().message << "\n";
  if (keep) std::cerr << "keel_volume_bench: lab logs kept in " << dir << "\n";
  guard_.reset();
  lab_.reset();
}

int KeelTarget::server_pid() const { return lab_ ? lab_->host(primary_).agent.pid : 0; }

std::vector<std::pair<std::string, int>> KeelTarget::cpu_pids() const {
  if (!lab_) return {};
  const int secondary = primary_ == 1 ? 2 : 1;
  return {{"primary agent", lab_->host(primary_).agent.pid},
          {"secondary agent", lab_->host(secondary).agent.pid}};
}

std::string KeelTarget::socket_of(int host) const {
  return lab_ ? lab_->host(host).dir + "/nbd-data.sock" : "";
}
std::string KeelTarget::uri_of(int host) const {
  return "nbd+unix:///data?socket=" + socket_of(host);
}
std::string KeelTarget::backing_of(int host) const {
  return lab_ ? lab_->host(host).dir + "/data.img" : "";
}

Result<std::string> KeelTarget::volume_command(int host, std::vector<std::string> args,
                                               Milliseconds timeout) {
  std::vector<std::string> argv{options_.keel, "volume"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--socket", lab_->host(host).socket});
  return run_tool(argv, timeout);
}

// Asks the agent itself, as `keel volume status --json` would: the bench polls every 50 ms
// during a resync, and starting a keel process for each poll took about a tenth of this 2-CPU
// machine away from the agents it measures.
json KeelTarget::status(int host) {
  auto client = agent::ControlClient::connect(lab_->host(host).socket);
  if (!client.ok()) return json::object();
  client.value().set_timeout_ms(5000);
  auto reply = client.value().request(json{{"op", "volume_status"}, {"volume", kVolume}});
  if (!reply.ok() || !reply.value().contains("volumes") || reply.value()["volumes"].empty()) {
    return json::object();
  }
  return reply.value()["volumes"][0];
}

Result<json> KeelTarget::wait_status(int host, const std::function<bool(const json&)>& predicate,
                                     const std::string& what, Milliseconds timeout,
                                     Milliseconds every) {
  const auto deadline = Clock::now() + timeout;
  json last;
  while (Clock::now() < deadline) {
    if (interrupted()) return Error{"interrupted"};
    last = status(host);
    if (!last.empty() && predicate(last)) return last;
    std::this_thread::sleep_for(every);
  }
  return Error{"h" + std::to_string(host) + ": " + what +
               " did not happen; last status: " + last.dump()};
}

Result<Ok> KeelTarget::wait_in_sync(int primary, int secondary, Milliseconds timeout) {
  auto first = wait_status(primary, in_sync_primary, "primary, connected and in sync", timeout);
  if (!first) return first.error();
  auto second = wait_status(
      secondary,
      [](const json& s) {
        return s.value("link", "") == "Connected" && s.value("disk", "") == "UpToDate";
      },
      "secondary connected and UpToDate", timeout);
  if (!second) return second.error();
  return Ok{};
}

}  // namespace keel::bench
