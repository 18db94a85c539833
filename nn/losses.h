#pragma once
// Losses, as functions of (prediction, target) returning a 0-dim tensor.
#include "autograd/softmax.h"
#include "tensor/tensor.h"

namespace minipipe::nn {

// Mean squared error over all elements; shapes must match.
Tensor mse_loss(const Tensor& prediction, const Tensor& target);

// Cross-entropy from logits [..., C] with int32 targets [...]; see autograd/softmax.h.
inline Tensor cross_entropy_loss(const Tensor& logits, const Tensor& targets, int32_t ignore_index = -100) {
  return cross_entropy(logits, targets, ignore_index);
}

}  // namespace minipipe::nn
