#pragma once
// Elementwise kernels on device memory, on a stream. Same ops, layouts and meaning as the
// CPU references in kernels/cpu/elementwise.h: unary kernels take contiguous arrays; the
// binary kernel reads each input through its own strides (0 broadcasts a dim).
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cpu/elementwise.h"

namespace minipipe::kernels::cuda {

using cpu::BinaryOp;
using cpu::UnaryOp;

void unary_forward(UnaryOp op, const float* x, float* y, int64_t n, float parameter, cudaStream_t stream);
void unary_backward(UnaryOp op, const float* x, const float* y, const float* dy, float* dx, int64_t n,
                    float parameter, cudaStream_t stream);
// out (contiguous, `shape`, ndim <= 16) = a op b.
void binary_strided(BinaryOp op, const float* a, const int64_t* a_strides, const float* b,
                    const int64_t* b_strides, float* out, const int64_t* shape, int ndim,
                    cudaStream_t stream);

// Attention's causal mask over [batch, queries, keys]: out = in where key <= query_offset +
// query, `fill` elsewhere. CPU reference: kernels/cpu/gather.h (causal_mask).
void causal_mask(const float* in, float* out, int64_t batch, int64_t queries, int64_t keys, int64_t query_offset,
                 float fill, cudaStream_t stream);

}  // namespace minipipe::kernels::cuda
