#include "agent/metadata_persister.hpp"

#include <asio/post.hpp>

namespace keel::agent {

void MetadataPersister::submit(Job job, Failed failed, std::function<void()> done) {
  asio::post(worker_,
             [this, job = std::move(job), failed = std::move(failed), done = std::move(done)] {
               // Once stopping, nothing more is written: a job after one that gave up would put
               // a later state on disk without the earlier job's bitmap pages.
               if (stopping()) return;
               for (int attempt = 1;; ++attempt) {
                 auto written = job();
                 if (written.ok()) break;
                 failed(written.error().message, attempt);
                 if (!wait_to_retry()) return;
               }
               done();
             });
}

void MetadataPersister::run(std::function<void()> work) { asio::post(worker_, std::move(work)); }

bool MetadataPersister::stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

bool MetadataPersister::wait_to_retry() {
  std::unique_lock lock(mutex_);
  wake_.wait_for(lock, retry_interval_, [this] { return stopping_; });
  return !stopping_;
}

void MetadataPersister::stop() {
  {
    std::lock_guard lock(mutex_);
    if (joined_) return;
    stopping_ = true;
    joined_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

}  // namespace keel::agent
