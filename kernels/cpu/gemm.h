#pragma once
// Row-major GEMM: C = alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T.
// A is stored [M, K] (or [K, M] when trans_a) with row stride lda; likewise B and C.
// On AVX-512 CPUs (built with -march=native) a packed micro-kernel of our own computes it,
// elsewhere Eigen; gemm.cpp is the only file that includes Eigen (it costs seconds of
// compile time per unit).
#include <cstdint>

namespace minipipe::kernels::cpu {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc);

}  // namespace minipipe::kernels::cpu
