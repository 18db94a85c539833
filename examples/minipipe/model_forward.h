#pragma once
// How the commands evaluate and sample: through a model's forward pass, which is the model
// itself or a pipeline's stages on their devices (PipelinedTraining::forward).
#include <functional>

#include "tensor/tensor.h"

namespace minipipe::cli {

// Inputs may be on the CPU; the output may be on any device.
using ModelForward = std::function<Tensor(const Tensor&)>;

}  // namespace minipipe::cli
