#pragma once
// A stage's stashed weight versions (PipeDream section 3.3): copies of its parameters, made
// on the stage's thread and so charged to its memory tracker. The executor runs StashWeights,
// LoadWeights and DropWeights on it; WeightVersionState (weight_versions.h) keeps the count.
#include <map>
#include <vector>

#include "pipeline/weight_versions.h"
#include "tensor/tensor.h"

namespace minipipe::pipeline {

class WeightStash {
 public:
  // Throws std::invalid_argument when a parameter is a view into a larger block, whose
  // memory cannot be exchanged on its own.
  explicit WeightStash(std::vector<Tensor> parameters);
  void stash(int version);  // copies the parameters, which hold `version`
  // Exchanges the parameters' memory with the copy of `version`, which then holds the
  // version the parameters held, `live`.
  void load(int version, int live);
  void drop(int version);
  int64_t bytes() const { return bytes_; }
  // After a failure: exchange the latest weights back in if an older version is in the
  // parameters, so that a failed run leaves the newest weights.
  void restore_latest(const WeightVersionState& versions);

 private:
  std::vector<Tensor> parameters_;
  std::map<int, std::vector<Tensor>> copies_;
  int64_t bytes_ = 0;
};

}  // namespace minipipe::pipeline
