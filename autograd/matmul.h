#pragma once
#include "tensor/tensor.h"

namespace minipipe {

// Matrix product over the last two dims.
//   [M, K] @ [K, N]          -> [M, N]
//   [..., M, K] @ [K, N]     -> [..., M, N]  (a Linear layer on a batch of sequences)
//   [..., M, K] @ [..., K, N] -> [..., M, N] (batch dims equal, e.g. attention heads)
// Transposed views are passed to GEMM as transposes, without copies.
Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace minipipe
