#pragma once
// Data parallelism over whole pipelines: D replicas of the K-stage pipeline each train on one
// contiguous share of every mini-batch, then average their gradients, and every replica takes
// the same step from the same average. Across processes the ranks do it (process_group.h);
// in one process the replicas are threads (PipelineReplicas), which is also the processes'
// oracle: both add the replicas' gradients in replica order and scale by 1 / D, so the two
// train bit for bit alike.
#include <functional>
#include <memory>
#include <vector>

#include "datasets/dataset.h"
#include "pipeline/executor.h"

namespace minipipe::pipeline {

// Replica r's share of `batch`: rows r * n / D .. (r + 1) * n / D - 1. It keeps its place in the
// mini-batch (sample_offset), which keys its dropout masks. Throws unless D divides the rows.
datasets::Batch data_parallel_share(const datasets::Batch& batch, int replica, int replicas);

// (g_0 + g_1 + ... + g_{D-1}) * (1 / D), added left to right in float, the replicas' average.
Tensor average_in_replica_order(const std::vector<Tensor>& gradients);

// Replicas 1 .. D-1 of a pipeline, in one process: each on its own copy of the model.
class PipelineReplicas {
 public:
  PipelineReplicas(int replicas, const std::function<std::shared_ptr<nn::Sequential>()>& make_model, const StagePlan& plan,
                   const Schedule& schedule, const PipelineOptions& options, const LossFunction& loss);

  // Replica 0 (`first`, on the trainer's model) and the others run their shares of `batch` at
  // once, each on its own stage threads, starting from the first's parameters; then the
  // first's parameters hold the average of every replica's gradients. Returns the first's
  // result with the loss averaged over the replicas (as every rank's is under mpirun).
  StepResult run(Pipeline& first, const datasets::Batch& batch, uint64_t step);

 private:
  std::vector<std::unique_ptr<Pipeline>> others_;
  bool started_ = false;  // the first run copies buffers (running statistics) as well
};

}  // namespace minipipe::pipeline
