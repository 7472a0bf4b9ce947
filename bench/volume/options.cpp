#include "options.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace keel::bench {
namespace {

std::atomic<bool> interrupted_flag{false};

}  // namespace

bool wanted(const Options& options, const std::string& target) {
  return std::find(options.only.begin(), options.only.end(), target) != options.only.end();
}

bool test_wanted(const Options& options, const std::string& test) {
  return options.tests.empty() ||
         std::find(options.tests.begin(), options.tests.end(), test) != options.tests.end();
}

bool interrupted() { return interrupted_flag.load(); }

// SIGINT, SIGTERM and SIGHUP are blocked in every thread (the children the lab spawns get an
// empty mask); this thread takes them and sets the flag, so that the benchmark unwinds through
// its destructors (nbdkit, fuse mounts, loop devices, the lab) instead of dying with them up.
// A tool started by run_capture shares the terminal's process group, so Ctrl-C ends it too.
void start_signal_thread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    for (;;) {
      int signal = 0;
      if (sigwait(&set, &signal) != 0) continue;
      if (interrupted_flag.exchange(true)) {
        std::cerr << "keel_volume_bench: signal " << signal << " again, still cleaning up\n";
      } else {
        std::cerr << "keel_volume_bench: signal " << signal << ", cleaning up\n";
      }
    }
  }).detach();
}

Result<std::string> run_tool(const std::vector<std::string>& argv, Milliseconds timeout,
                             double* seconds) {
  if (interrupted()) return Error{"interrupted"};
  const auto start = Clock::now();
  auto ran = lab::run_capture(argv, timeout);
  if (seconds != nullptr) *seconds = seconds_since(start);
  if (!ran) return ran.error();
  if (ran.value().exit_code != 0) {
    std::string err = ran.value().err.empty() ? ran.value().out : ran.value().err;
    if (err.size() > 2000) err = err.substr(0, 2000) + "...";
    return Error{lab::describe_command(argv) + ": exit " + std::to_string(ran.value().exit_code) +
                 ": " + err};
  }
  if (interrupted()) return Error{"interrupted"};
  return ran.value().out;
}

std::uint64_t rss_bytes(int pid) {
  if (pid <= 0) return 0;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) != 0) continue;
    std::istringstream fields(line.substr(6));
    std::uint64_t kib = 0;
    fields >> kib;
    return kib * 1024;
  }
  return 0;
}

double cpu_seconds(int pid) {
  if (pid <= 0) return 0;
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(file, text);
  const auto end_of_name = text.rfind(')');
  if (end_of_name == std::string::npos) return 0;
  std::istringstream fields(text.substr(end_of_name + 2));
  std::string field;
  double ticks = 0;
  for (int index = 3; fields >> field; ++index) {  // field 3 is the state; 14 utime, 15 stime
    if (index == 14 || index == 15) ticks += std::stod(field);
    if (index == 15) break;
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double mb_per_s(std::uint64_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) / 1e6 / seconds : 0;
}

double round1(double value) { return std::round(value * 10) / 10; }

}  // namespace keel::bench
