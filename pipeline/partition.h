#pragma once
// Cutting a Sequential into K contiguous stages. Every plan covers every layer exactly
// once; asking for more stages than layers, or a balance that does not add up, is an error.
#include <string>
#include <vector>

#include "nn/sequential.h"
#include "pipeline/profile.h"

namespace minipipe::pipeline {

struct StagePlan {
  std::string method;
  std::vector<int> layers_per_stage;
  std::vector<int64_t> parameters;     // per stage
  std::vector<double> predicted_cost;  // per stage, in the method's unit (layers, parameters, seconds)
  int stages() const { return static_cast<int>(layers_per_stage.size()); }
  int first_layer(int stage) const;
  std::string str(const nn::Sequential& model) const;  // a table: stage, layers (by name), parameters, cost
};

// Contiguous cuts of per-layer costs into `stages` parts minimising the largest part, by
// dynamic programming over (layers placed, stages used): exact, O(stages * layers^2).
std::vector<int> balance_by_cost(const std::vector<double>& layer_costs, int stages);

StagePlan partition_explicit(const nn::Sequential& model, const std::vector<int>& balance);
StagePlan partition_uniform(const nn::Sequential& model, int stages);
StagePlan partition_by_parameters(const nn::Sequential& model, int stages);
// Times forward + backward of each layer on `sample` (the model's input for one
// micro-batch), median of `repeats`, then balances by time (PipeDream section 3.1's
// profile, without the replication the paper also considers).
StagePlan partition_by_time(nn::Sequential& model, int stages, const Tensor& sample, int repeats = 3);
// The same from per-layer profiles already taken (pipeline/profile.h).
StagePlan partition_by_time(const nn::Sequential& model, int stages, const std::vector<LayerProfile>& profiles);
// "uniform", "params", "time" (needs a sample) or an explicit balance "3,3,2".
StagePlan make_partition(nn::Sequential& model, int stages, const std::string& method, const Tensor& sample);

// The layers of one stage as a Sequential sharing the model's modules (and so its
// parameters, under the same names).
std::shared_ptr<nn::Sequential> stage_module(const nn::Sequential& model, const StagePlan& plan, int stage);
// Every stage's, in order.
std::vector<std::shared_ptr<nn::Sequential>> stage_modules(const nn::Sequential& model, const StagePlan& plan);

}  // namespace minipipe::pipeline
