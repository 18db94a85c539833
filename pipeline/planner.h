#pragma once
// PipeDream's planner (Narayanan et al. 2019, section 3.1): from a profile of every layer and
// a model of the links between workers, choose contiguous stages and how many replicas
// (data-parallel copies) each stage gets, so that the slowest stage, which sets the
// pipeline's rate, is as fast as possible.
#include <string>
#include <vector>

#include "pipeline/link.h"
#include "pipeline/profile.h"

namespace minipipe::pipeline {

struct PlannerOptions {
  int workers = 1;
  LinkModel link{5e9, 0};  // between two workers (default: a memory copy on one machine)
  int64_t memory_per_worker = 0;  // bytes; 0: no limit
  int most_replicas = 0;          // per stage; 0: any (1: stages only, no data parallelism)
};

struct PlannedStage {
  int first_layer = 0, layers = 0, replicas = 1;
  double compute_seconds = 0;      // forward + backward of one mini-batch on one replica
  double weight_sync_seconds = 0;  // synchronising the replicas' weights after a mini-batch
  double seconds = 0;              // T(i -> j, m): this stage's time per mini-batch
  int64_t memory_bytes = 0;        // the estimate checked against memory_per_worker
};

struct PipelinePlan {
  std::vector<PlannedStage> stages;
  double seconds_per_mini_batch = 0;  // the slowest stage or boundary: A(layers, workers)
  std::string bottleneck;             // what sets that time, in words
  std::vector<int> balance() const;   // layers per stage
  std::vector<int> replicas() const;
  bool replicated() const;            // some stage has more than one replica
  // A table: stage, layers (by name, given the model), replicas, compute, sync, time; then
  // the predicted time per mini-batch and the bottleneck.
  std::string str(const nn::Sequential* model = nullptr) const;
};

// Forward and backward of layers first .. first + count - 1 on one micro-batch.
double compute_seconds(const std::vector<LayerProfile>& layers, int first, int count);
// W^m = 4 (m - 1) |w| / (m B) of section 3.1 (plus the link latency) for their weights |w|
// on m replicas; 0 for one.
double weight_sync_seconds(const std::vector<LayerProfile>& layers, int first, int count, int replicas, const LinkModel& link);
// T(i -> j, m) = (1/m) max(compute, W^m).
double stage_seconds(const std::vector<LayerProfile>& layers, int first, int count, int replicas, const LinkModel& link);
// C: the time to send the output of layer `layer` to the next worker (its gradient comes
// back the same way, hence 2C at a boundary).
double boundary_seconds(const std::vector<LayerProfile>& layers, int layer, const LinkModel& link);
// What a replica of the stage holds at most: its weights once per version a mini-batch in
// flight may need plus the latest, and the outputs of its layers for every mini-batch in
// flight, with at most `workers` in flight (NOAM <= workers).
int64_t stage_memory_bytes(const std::vector<LayerProfile>& layers, int first, int count, int workers);

// The dynamic program of section 3.1 over (first j layers, m workers):
//   A(j, m) = min( T(1 -> j, m),  min over i < j, m' < m of max(A(i, m - m'), 2 C_i, T(i+1 -> j, m')) ),
// using all the workers; stages over the memory limit are not considered. Throws when no
// plan fits.
PipelinePlan plan_pipeline(const std::vector<LayerProfile>& layers, const PlannerOptions& options);

}  // namespace minipipe::pipeline
