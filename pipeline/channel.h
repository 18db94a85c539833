#pragma once
// A channel between neighbouring stages: a blocking first-in first-out queue of
// (micro-batch, tensor) that can be closed, which wakes every waiting receiver with an
// error; that is how a failure in one stage stops the others instead of hanging them.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "tensor/tensor.h"

namespace minipipe::pipeline {

class ChannelClosed : public std::runtime_error {
 public:
  ChannelClosed() : std::runtime_error("channel closed: another stage failed") {}
};

class Channel {
 public:
  void send(int micro_batch, Tensor value) {
    {
      std::lock_guard lock(mutex_);
      queue_.emplace_back(micro_batch, std::move(value));
    }
    ready_.notify_one();
  }

  // Waits for the next message, which must be micro-batch `expected` (the validator makes
  // sure of that for every schedule that runs).
  Tensor receive(int expected) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return closed_ || !queue_.empty(); });
    if (closed_) throw ChannelClosed();
    auto [micro_batch, value] = std::move(queue_.front());
    queue_.pop_front();
    if (micro_batch != expected)
      throw std::logic_error("received micro-batch " + std::to_string(micro_batch) + " while expecting " +
                             std::to_string(expected));
    return value;
  }

  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::pair<int, Tensor>> queue_;
  bool closed_ = false;
};

}  // namespace minipipe::pipeline
