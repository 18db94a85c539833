#include "pipeline/replica_all_reduce.h"

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "kernels/dispatch.h"
#include "pipeline/channel.h"

namespace minipipe::pipeline {

void ReplicaAllReduce::run(int replica, const std::vector<Tensor>& parameters) {
  std::vector<Tensor> mine;
  for (const Tensor& p : parameters) mine.push_back(p.grad());  // backward makes a fresh tensor; nobody writes this one
  if (!parameters.empty()) kernels::synchronize(parameters.front().device());  // the others read it from their threads
  Round* round = nullptr;
  int number = 0;
  {
    std::unique_lock lock(mutex_);
    number = rounds_done_[replica]++;
    round = &rounds_[number];
    if (round->gradients.empty()) round->gradients.resize(replicas_);
    round->gradients[replica] = std::move(mine);
    ++round->offered;
    all_offered_.notify_all();
    all_offered_.wait(lock, [&] { return closed_ || round->offered == replicas_; });
    if (closed_) throw ChannelClosed();
  }
  // Every replica's offer is in place and stays unchanged until all have finished reading.
  NoGradGuard no_grad;
  const float share = 1.0f / static_cast<float>(replicas_);
  for (size_t i = 0; i < parameters.size(); ++i) {
    Tensor sum;
    for (const std::vector<Tensor>& offer : round->gradients) {
      const Tensor g = offer.at(i).defined() ? offer[i].to(parameters[i].device()) : Tensor();
      if (g.defined()) sum = sum.defined() ? sum + g : g;
    }
    if (sum.defined()) parameters[i].set_grad(sum * share);
  }
  if (!parameters.empty()) kernels::synchronize(parameters.front().device());
  std::lock_guard lock(mutex_);
  if (++round->finished == replicas_) rounds_.erase(number);
}

void ReplicaAllReduce::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  all_offered_.notify_all();
}

}  // namespace minipipe::pipeline
