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

void VolumeThread::stop(const std::function<void()>& last) {
  if (stopped_) return;
  stopped_ = true;
  if (!thread_.joinable()) {
    last();
    return;
  }
  std::promise<void> closed;
  asio::post(io_, [&] {
    last();
    closed.set_value();
  });
  closed.get_future().wait();
  keep_running_.reset();
  io_.stop();
  thread_.join();
}

}  // namespace keel::agent
