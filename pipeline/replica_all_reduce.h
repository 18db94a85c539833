#pragma once
// The all-reduce of a replicated stage's gradients, in process (PipeDream section 3.1: the
// replicas of a stage train on different mini-batches and average their gradients before
// each update). Every replica offers its gradients; once all have, each replaces its own with
// their mean, added up in replica order and scaled by 1 / replicas, so every replica gets the
// same bits and, with the same optimizer, keeps the same weights.
#include <condition_variable>
#include <map>
#include <mutex>
#include <vector>

#include "tensor/tensor.h"

namespace minipipe::pipeline {

class ReplicaAllReduce {
 public:
  explicit ReplicaAllReduce(int replicas) : replicas_(replicas), rounds_done_(replicas, 0) {}

  // Called by each replica with its stage's parameters: the k-th call of one replica meets the
  // k-th call of every other. Blocks until all have arrived; throws ChannelClosed (channel.h)
  // once close() was called, as when another worker failed.
  void run(int replica, const std::vector<Tensor>& parameters);
  void close();

 private:
  struct Round {
    std::vector<std::vector<Tensor>> gradients;  // [replica][parameter]; undefined: none yet
    int offered = 0, finished = 0;
  };
  const int replicas_;
  std::mutex mutex_;
  std::condition_variable all_offered_;
  std::map<int, Round> rounds_;  // those some replica still reads
  std::vector<int> rounds_done_;
  bool closed_ = false;
};

}  // namespace minipipe::pipeline
