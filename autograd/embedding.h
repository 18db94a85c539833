#pragma once
#include "tensor/tensor.h"

namespace minipipe {

// weight [V, D], indices int32 of any shape -> [..., D]. Backward scatter-adds into the
// rows that were looked up (a repeated index accumulates).
Tensor embedding(const Tensor& weight, const Tensor& indices);

}  // namespace minipipe
