#pragma once
// What PipeDream's planner needs to know of each layer (section 3.1): forward and backward
// time on one micro-batch, the bytes of its output (what crosses a stage boundary, and the
// gradient that comes back), and the bytes of its parameters (what replicas synchronise and
// weight stashing copies).
#include <cstdint>
#include <vector>

#include "nn/model_recipe.h"
#include "nn/sequential.h"

namespace minipipe::pipeline {

struct LayerProfile {
  double forward_seconds = 0, backward_seconds = 0;
  double weight_seconds = 0;  // of a backward split as zero bubble splits it, the W part (the weights' gradients)
  int64_t output_bytes = 0, parameter_bytes = 0;
};

// Runs each layer's forward and backward on `sample` (the model's input for one
// micro-batch), on the calling thread, and keeps the median of `repeats` timings; then the
// backward again split into B and W (zero bubble's), for W's time. The gradients it leaves
// are cleared.
std::vector<LayerProfile> profile_layers(nn::Sequential& model, const Tensor& sample, int repeats = 3);
// The same for a model described layer by layer, built one layer at a time on `device` and
// dropped after its timing: a process that holds part of a model can plan the whole.
std::vector<LayerProfile> profile_layers(const nn::ModelRecipe& recipe, const Tensor& sample, Device device, int repeats = 3);

// The median of repeated timings (the upper middle one of an even count).
double median_seconds(std::vector<double> timings);

}  // namespace minipipe::pipeline
