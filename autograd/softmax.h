#pragma once
// Softmax family over the last dim, and cross-entropy from logits.
#include <cstdint>

#include "tensor/tensor.h"

namespace minipipe {

Tensor softmax(const Tensor& x);
Tensor log_softmax(const Tensor& x);

// logits [..., C] (float32) and targets [...] (int32 class indices): the mean of
// -log softmax(logits)[target] over the targets that are not ignore_index. Fused with
// log-softmax, so no probability tensor is materialised in forward. With every target
// ignored the loss is 0 (PyTorch gives NaN): a pipeline micro-batch made only of padding
// must not poison the sum.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index = -100);

}  // namespace minipipe
