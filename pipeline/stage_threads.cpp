#include "pipeline/stage_threads.h"

namespace minipipe::pipeline {

StageThreads::~StageThreads() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_posted_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

void StageThreads::run(const std::function<void(int stage)>& job) {
  std::unique_lock lock(mutex_);
  if (threads_.empty())
    for (int s = 0; s < stages_; ++s) threads_.emplace_back([this, s] { serve(s); });
  job_ = &job;
  error_ = nullptr;
  busy_ = stages_;
  ++round_;
  work_posted_.notify_all();
  work_done_.wait(lock, [this] { return busy_ == 0; });
  job_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

void StageThreads::serve(int stage) {
  uint64_t done = 0;  // the last round this thread ran
  std::unique_lock lock(mutex_);
  while (true) {
    work_posted_.wait(lock, [&] { return stopping_ || round_ != done; });
    if (stopping_) return;
    done = round_;
    const std::function<void(int)>& job = *job_;
    lock.unlock();
    std::exception_ptr error;
    try {
      job(stage);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    if (error && !error_) error_ = error;
    if (--busy_ == 0) work_done_.notify_all();
  }
}

}  // namespace minipipe::pipeline
