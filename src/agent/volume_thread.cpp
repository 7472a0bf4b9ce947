#include "agent/volume_thread.hpp"

#include <pthread.h>
#include <sched.h>

#include "io/busy_poll.hpp"

namespace keel::agent {

VolumeThread::VolumeThread(std::string name, std::uint32_t busy_poll_us)
    : name_(std::move(name)),
      busy_poll_us_(busy_poll_us),
      keep_running_(asio::make_work_guard(io_)) {}

VolumeThread::~VolumeThread() {
  stop([] {});
}

void VolumeThread::start() {
  if (thread_.joinable() || stopped_) return;
  thread_ = std::thread([this] {
    // Created from the agent's real-time thread, it would inherit that priority: drop it.
    sched_param ordinary{};
    (void)::pthread_setschedparam(::pthread_self(), SCHED_OTHER, &ordinary);
    const std::string short_name = ("vol-" + name_).substr(0, 15);  // the kernel's limit
    (void)::pthread_setname_np(::pthread_self(), short_name.c_str());
    io::run_busy_polling(io_, busy_poll_us_);
  });
}

void VolumeThread::request_stop(std::function<void()> last) {
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

bool VolumeThread::wait_stopped(std::chrono::milliseconds timeout) {
  return closed_.valid() && closed_.wait_for(timeout) == std::future_status::ready;
}

void VolumeThread::stop(const std::function<void()>& last) {
  request_stop(last);
  closed_.wait();
  if (!thread_.joinable()) return;
  keep_running_.reset();
  io_.stop();
  thread_.join();
}

}  // namespace keel::agent
