#include "agent/service_thread.hpp"

#include <pthread.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "io/busy_poll.hpp"

namespace keel::agent {

ServiceThreadOptions volume_thread_options(const std::string& volume, std::uint32_t busy_poll_us) {
  return {"volume thread " + volume, "vol-" + volume, "its disk may be stalled", busy_poll_us,
          false};
}

ServiceThreadOptions vip_thread_options() {
  return {"the floating IPs' thread",
          "vip",
          "a change of the host's addresses may be waiting for the kernel",
          0,
          true,
          true};
}

ServiceThread::ServiceThread(ServiceThreadOptions options)
    : options_(std::move(options)), keep_running_(asio::make_work_guard(io_)) {}

ServiceThread::~ServiceThread() {
  stop([] {});
}

void ServiceThread::start() {
  if (thread_.joinable() || stopped_) return;
  // The creator's policy with its flags: SCHED_RESET_ON_FORK must stay, so that what this thread
  // spawns (hooks, health checks) runs at ordinary priority as the agent's own children do.
  int policy = SCHED_OTHER;
  sched_param priority{};
  if (options_.creator_priority) {
    policy = ::sched_getscheduler(0);
    if (policy < 0 || ::sched_getparam(0, &priority) != 0) {
      policy = SCHED_OTHER;
      priority = sched_param{};
    }
    const int base = policy & ~SCHED_RESET_ON_FORK;
    if (options_.below_creator && (base == SCHED_RR || base == SCHED_FIFO) &&
        priority.sched_priority > ::sched_get_priority_min(base)) {
      --priority.sched_priority;
    }
  }
  thread_ = std::thread([this, policy, priority] {
    // Set either way: without SCHED_RESET_ON_FORK a thread inherits its creator's policy.
    if (::sched_setscheduler(0, policy, &priority) != 0) {
      spdlog::warn("{}: cannot set its scheduling priority: {}", options_.what,
                   std::strerror(errno));
    }
    const std::string short_name = options_.thread_name.substr(0, 15);  // the kernel's limit
    (void)::pthread_setname_np(::pthread_self(), short_name.c_str());
    io::run_busy_polling(io_, options_.busy_poll_us);
  });
}

void ServiceThread::request_stop(std::function<void()> last) {
  if (stopped_) return;
  stopped_ = true;
  auto closed = std::make_shared<std::promise<void>>();
  closed_ = closed->get_future().share();
  if (!thread_.joinable()) {
    last();
    closed->set_value();
    return;
  }
  asio::post(io_, [closed, last = std::move(last)] {
    last();
    closed->set_value();
  });
}

bool ServiceThread::wait_stopped(std::chrono::milliseconds timeout) {
  return closed_.valid() && closed_.wait_for(timeout) == std::future_status::ready;
}

void ServiceThread::stop(const std::function<void()>& last) {
  request_stop(last);
  closed_.wait();
  if (!thread_.joinable()) return;
  keep_running_.reset();
  io_.stop();
  thread_.join();
}

}  // namespace keel::agent
