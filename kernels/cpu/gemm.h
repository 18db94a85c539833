#pragma once
// Row-major GEMM: C = alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T.
// A is stored [M, K] (or [K, M] when trans_a) with row stride lda; likewise B and C.
// On AVX-512 CPUs (built with -march=native) a packed micro-kernel of our own computes it,
// elsewhere Eigen; gemm.cpp is the only file that includes Eigen (it costs seconds of
// compile time per unit). Both use up to kernel_threads() threads (threads.h).
#include <cstdint>

namespace minipipe::kernels::cpu {

// Below this many multiply-adds (about 40 us on one core) a GEMM stays on one thread. Split
// from 1M up, the 2M-sized GEMMs of the digits ResNet made its steps 10-20% slower: the
// other thread must wake, and the operands this thread has just written (im2col's columns)
// must cross to the other core's cache. (Callers with many such GEMMs run them side by
// side instead, as conv2d does with its image groups.)
constexpr int64_t kParallelMultiplyAdds = int64_t{1} << 22;

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc);

// C = op(A) * op(B) + bias, the bias (n values) added to every row: a linear layer's forward.
// The bias is added as the first depth block's tile is stored, with the rounding of
// gemm(beta = 1) on a C that holds the bias in every row, without that pass over C.
void gemm_plus_bias(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                    const float* b, int64_t ldb, const float* bias, float* c, int64_t ldc);

// Multiply-adds (m n k) of every gemm call so far, on every thread: tests measure the work of
// a computation by the difference before and after it.
int64_t multiply_adds_done();

// C_i = alpha * op(A_i) * op(B_i) + beta * C_i for i in [0, batch), X_i = X + i * stride_x.
void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
                  int64_t ldc, int64_t stride_c, int64_t batch);

}  // namespace minipipe::kernels::cpu
