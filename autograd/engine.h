#pragma once
// The backward engine (DESIGN.md decision 4). It takes several roots, each with its own
// gradient: a pipeline stage runs backward from its output with the gradient received from
// the next stage, and TeraPipe adds the gradients of keys/values used by later slices.
// The engine keeps no global state, so several threads may run it at once and a backward
// formula may call it again (checkpoint() does).
#include <vector>

#include "tensor/tensor.h"

namespace minipipe {

// Accumulates d(sum_i <roots[i], root_grads[i]>)/d(leaf) into every leaf's .grad. A
// root_grads entry may be undefined for a one-element root (then 1 is used).
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads,
              bool retain_graph = false);

// Returns the gradients with respect to `inputs` (leaves or computed tensors) without
// touching any .grad. An input the roots do not depend on gets zeros.
std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads,
                         const std::vector<Tensor>& inputs, bool retain_graph = false);

}  // namespace minipipe
