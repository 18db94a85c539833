#pragma once
#include "tensor/tensor.h"

namespace minipipe {

// Matrix product over the last two dims.
//   [M, K] @ [K, N]          -> [M, N]
//   [..., M, K] @ [K, N]     -> [..., M, N]  (a Linear layer on a batch of sequences)
//   [..., M, K] @ [..., K, N] -> [..., M, N] (batch dims equal, e.g. attention heads)
// Transposed views are passed to GEMM as transposes, without copies. alpha scales the
// product inside GEMM (attention's 1/sqrt(d)) at no extra pass over the result.
Tensor matmul(const Tensor& a, const Tensor& b, float alpha = 1.0f);

// y = x weight^T + bias: x [..., in], weight [out, in] (PyTorch's layout), bias [out] or
// undefined. One node instead of matmul then add: the bias initialises the GEMM's output and
// its gradient is the column sum of dY, so there is no broadcast add to run forward or backward.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

}  // namespace minipipe
