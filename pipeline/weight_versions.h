#pragma once
// Weight versions of asynchronous schedules (DESIGN.md decision 10; PipeDream section 3.3).
// A stage's weights start a run as version 0 and each OptimizerStep makes the next. The pass
// below writes into the schedule which version every Forward and Backward runs with, as the
// schedule's WeightPolicy says, and inserts StashWeights, LoadWeights and DropWeights so that
// each of those versions is in the parameters when it is needed and no copy outlives its use.
// WeightVersionState is the one bookkeeping of those instructions that the validator, the
// simulator and the executor all follow.
#include <set>

#include "pipeline/schedule.h"

namespace minipipe::pipeline {

void assign_weight_versions(Schedule& schedule);

// What a stage holds: the version its parameters have now (`live`), the newest it has made
// (`latest`), and its stashed copies.
class WeightVersionState {
 public:
  // Applies a weight instruction or OptimizerStep, or checks that a Forward or Backward finds
  // its version in the parameters; throws std::logic_error naming what is wrong otherwise.
  void apply(const Instruction& instruction);
  int live() const { return live_; }
  int latest() const { return latest_; }
  const std::set<int>& stashed() const { return stashed_; }
  // Distinct versions in memory: the stashed copies and the parameters'.
  int versions_held() const { return static_cast<int>(stashed_.size() + (stashed_.count(live_) ? 0 : 1)); }

 private:
  int live_ = 0, latest_ = 0;
  std::set<int> stashed_;
};

}  // namespace minipipe::pipeline
