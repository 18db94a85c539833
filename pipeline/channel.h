#pragma once
// A channel between neighbouring stages: a blocking first-in first-out queue of
// (micro-batch, tensor, mark of the work that wrote it) that can be closed, which wakes
// every waiting receiver with an error; that is how a failure in one stage stops the others
// instead of hanging them.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "kernels/dispatch.h"
#include "tensor/tensor.h"

namespace minipipe::pipeline {

class ChannelClosed : public std::runtime_error {
 public:
  ChannelClosed() : std::runtime_error("channel closed: another stage failed") {}
};

struct Message {
  int micro_batch;
  int slice;  // token slice (TeraPipe); 0 when sequences are whole
  int chunk;  // the receiver's model chunk (interleaved 1F1B); 0 when stages hold one
  Tensor value;
  kernels::WorkMark written;  // the receiver's stream waits for it before reading `value`
  int64_t weight_version = -1;  // asynchronous schedules: the input stage's version for this micro-batch
};

class Channel {
 public:
  void send(Message message) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(message));
    }
    ready_.notify_one();
  }

  // Waits for the next message, which must be micro-batch `expected`, token slice
  // `expected_slice`, chunk `expected_chunk` (the validator makes sure of that for every
  // schedule that runs).
  Message receive(int expected, int expected_slice, int expected_chunk) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return closed_ || !queue_.empty(); });
    if (closed_) throw ChannelClosed();
    Message message = std::move(queue_.front());
    queue_.pop_front();
    if (message.micro_batch != expected || message.slice != expected_slice || message.chunk != expected_chunk)
      throw std::logic_error("received micro-batch " + std::to_string(message.micro_batch) + ", slice " +
                             std::to_string(message.slice) + ", chunk " + std::to_string(message.chunk) + " while expecting " +
                             std::to_string(expected) + ", slice " + std::to_string(expected_slice) + ", chunk " +
                             std::to_string(expected_chunk));
    return message;
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
  std::deque<Message> queue_;
  bool closed_ = false;
};

}  // namespace minipipe::pipeline
