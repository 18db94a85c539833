#pragma once
// Activation checkpointing (GPipe section 2.3, "re-materialization"): run `function`
// forward without keeping its intermediate activations; in backward, run it again with
// the same random state (so dropout draws the same masks) and backpropagate through it.
// Parameters the function uses accumulate their gradients as usual.
#include <functional>
#include <vector>

#include "tensor/tensor.h"

namespace minipipe {

using CheckpointedFunction = std::function<Tensor(const std::vector<Tensor>& inputs)>;

Tensor checkpoint(const CheckpointedFunction& function, const std::vector<Tensor>& inputs);

}  // namespace minipipe
