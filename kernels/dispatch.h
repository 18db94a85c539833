#pragma once
// One entry per kernel that has both a CPU and a CUDA implementation: runs the one for
// `device`, CUDA kernels on that GPU and the calling thread's current stream. The op layer
// (autograd/) calls these, so that it says what to compute once and this file alone knows
// which backends a build has. Arguments mean what they mean in kernels/cpu/*.h.
#include <cstdint>

#include "kernels/cpu/elementwise.h"
#include "tensor/device.h"

namespace minipipe::kernels {

using cpu::BinaryOp;
using cpu::UnaryOp;

// True when this build has the CUDA kernels (it was configured with nvcc present).
bool cuda_built();

void unary_forward(const Device& device, UnaryOp op, const float* x, float* y, int64_t n, float parameter);
void unary_backward(const Device& device, UnaryOp op, const float* x, const float* y, const float* dy,
                    float* dx, int64_t n, float parameter);
void binary_strided(const Device& device, BinaryOp op, const float* a, const int64_t* a_strides,
                    const float* b, const int64_t* b_strides, float* out, const int64_t* shape, int ndim);

void causal_mask(const Device& device, const float* in, float* out, int64_t batch, int64_t queries, int64_t keys,
                 int64_t query_offset, float fill);

void sum_dim(const Device& device, const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner);

void softmax_forward(const Device& device, const float* x, float* y, int64_t rows, int64_t cols);
void softmax_backward(const Device& device, const float* y, const float* dy, float* dx, int64_t rows,
                      int64_t cols);
void log_softmax_forward(const Device& device, const float* x, float* y, int64_t rows, int64_t cols);
void log_softmax_backward(const Device& device, const float* y, const float* dy, float* dx, int64_t rows,
                          int64_t cols);
void cross_entropy_forward(const Device& device, const float* logits, const int32_t* targets, float* row_loss,
                           float* logsumexp, int64_t rows, int64_t classes, int32_t ignore_index);
// `scale` points to one float in the device's memory (host memory for the CPU), so that a GPU
// backward pass need not wait for the host to read it.
void cross_entropy_backward(const Device& device, const float* logits, const int32_t* targets,
                            const float* logsumexp, const float* scale, float* dlogits, int64_t rows,
                            int64_t classes, int32_t ignore_index);

void gemm(const Device& device, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace minipipe::kernels
