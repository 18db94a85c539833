#pragma once
// A channel between neighbouring stages: a blocking first-in first-out sequence of
// (micro-batch, tensor, mark of the work that wrote it) that can be closed, which wakes
// every waiting receiver with an error; that is how a failure in one stage stops the others
// instead of hanging them.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <string>
#include <tuple>
#include <utility>

#include "kernels/dispatch.h"
#include "pipeline/link.h"
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
  // An injected link (LinkChannel): when the message may be read, on the steady clock
  // (microseconds since its epoch, shared by the processes of one machine); 0: at once.
  double deliver_at_us = 0;
};

// A received message made safe to read on this thread's stream. On a GPU each stage thread
// queues its work on a stream of its own, and a tensor crosses streams safely by two rules
// (tensor/cuda_allocator.cpp):
// - the receiver's stream waits for the work that wrote it (an event the sender records
//   after queueing that work, on the device the tensor is on), since it does not follow the
//   sender's stream; neither host waits;
// - the receiver's stream takes its memory over, since that stream reads it from then on: the
//   sender's stream must not reuse the memory, when the sender drops the tensor last, before
//   those reads ran.
// On the CPU work is done when its call returns, and both rules cost nothing.
inline Message take_over_message(Message message) {
  message.written.make_current_stream_wait();
  if (message.value.defined()) message.value.impl()->storage->hand_over_to_current_stream();
  return message;
}

inline double steady_now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Where a stage's messages to one neighbour go. The executor knows only this interface: the
// in-process queue below, or a channel to another process (pipeline/process_group.h).
class Channel {
 public:
  virtual ~Channel() = default;
  virtual void send(Message message) = 0;  // never waits for the receiver
  // Waits for the next message, which must be micro-batch `expected`, token slice
  // `expected_slice`, chunk `expected_chunk` (the validator makes sure of that for every
  // schedule that runs); throws ChannelClosed once the channel is closed.
  virtual Message receive(int expected, int expected_slice, int expected_chunk) = 0;
  virtual void close() = 0;

 protected:
  static void check_expected(const Message& message, int expected, int expected_slice, int expected_chunk) {
    if (message.micro_batch != expected || message.slice != expected_slice || message.chunk != expected_chunk)
      throw std::logic_error("received micro-batch " + std::to_string(message.micro_batch) + ", slice " +
                             std::to_string(message.slice) + ", chunk " + std::to_string(message.chunk) + " while expecting " +
                             std::to_string(expected) + ", slice " + std::to_string(expected_slice) + ", chunk " +
                             std::to_string(expected_chunk));
  }
};

// Between two stages of one process: a queue.
class QueueChannel : public Channel {
 public:
  void send(Message message) override {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(message));
    }
    ready_.notify_one();
  }

  Message receive(int expected, int expected_slice, int expected_chunk) override {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return closed_ || !queue_.empty(); });
    if (closed_) throw ChannelClosed();
    Message message = std::move(queue_.front());
    queue_.pop_front();
    check_expected(message, expected, expected_slice, expected_chunk);
    return message;
  }

  void close() override {
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

// Wraps a channel in a slower link (link.h): the sender stamps when the message will have crossed the
// link (after the messages before it, the bandwidth being shared), and the receiver waits
// until then. Neither side blocks the other longer than the link would.
class LinkChannel : public Channel {
 public:
  LinkChannel(std::unique_ptr<Channel> inner, LinkModel link) : inner_(std::move(inner)), link_(link) {}
  void send(Message message) override {
    const double start = std::max(steady_now_us(), link_free_at_us_);
    const double bytes = message.value.defined() ? static_cast<double>(message.value.nbytes()) : 0.0;
    link_free_at_us_ = start + 1e6 * link_.transfer_seconds(bytes);
    message.deliver_at_us = link_free_at_us_ + 1e6 * link_.latency_seconds;
    inner_->send(std::move(message));
  }
  Message receive(int expected, int expected_slice, int expected_chunk) override {
    Message message = inner_->receive(expected, expected_slice, expected_chunk);
    const double wait_us = message.deliver_at_us - steady_now_us();
    if (wait_us > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(wait_us));
    return message;
  }
  void close() override { inner_->close(); }

 private:
  std::unique_ptr<Channel> inner_;
  LinkModel link_;
  double link_free_at_us_ = 0;  // the sender's side: when the link has sent what it was given
};

// Multi-process pipelines (pipeline/process_group.h): this process runs one stage, and the
// channels between it and its neighbours in other processes come from here.
class RemoteStages {
 public:
  virtual ~RemoteStages() = default;
  virtual int local_stage() const = 0;
  // With every stage replicated (pipedream's replicas, one process each): how many replicas
  // each stage has, and which one this process runs. Its channels join it to the same replica
  // of the neighbouring stages, the only ones a round-robin over equal replica counts pairs it with.
  virtual int replicas() const { return 1; }
  virtual int local_replica() const { return 0; }
  // A replicated stage's AllReduce (PipeDream section 3.1) with the other processes running the
  // stage's replicas: the gradients of `parameters` replaced by their mean, added in replica order.
  virtual void average_replica_gradients(const std::vector<Tensor>& parameters) const = 0;
  // Activations (gradient false) or gradients from stage `from` to stage `to`, one of which
  // is the local stage.
  virtual std::unique_ptr<Channel> channel(bool gradient, int from, int to) const = 0;
  // Skip connection `route` (its index in Pipeline::skip_routes()) between stages `from` and
  // `to`, one of which is the local stage: the stashed tensor (gradient false) or its gradient,
  // straight between the two, on a channel of its own. It carries CPU tensors.
  virtual std::unique_ptr<Channel> skip_channel(int route, bool gradient, int from, int to) const = 0;
};

// Skip connections across stages (nn/skip.h): messages addressed by what they carry rather
// than by order, since a skip joins two stages that are not neighbours. A receive waits for
// its message, or for the mailbox to close.
class Mailbox {
 public:
  struct Address {
    bool gradient;     // false: the stashed tensor, going forward; true: its gradient, going back
    std::string name;  // the skip connection's
    int micro_batch, slice;
    auto operator<=>(const Address&) const = default;
  };

  void send(const Address& to, Message message) {
    {
      std::lock_guard lock(mutex_);
      if (!messages_.emplace(to, std::move(message)).second)
        throw std::logic_error("skip '" + to.name + "': micro-batch " + std::to_string(to.micro_batch) + " sent twice");
    }
    arrived_.notify_all();
  }

  Message receive(const Address& from) {
    std::unique_lock lock(mutex_);
    arrived_.wait(lock, [&] { return closed_ || messages_.count(from); });
    if (closed_) throw ChannelClosed();
    auto it = messages_.find(from);
    Message message = std::move(it->second);
    messages_.erase(it);
    return message;
  }

  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    arrived_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::map<Address, Message> messages_;
  bool closed_ = false;
};

}  // namespace minipipe::pipeline
