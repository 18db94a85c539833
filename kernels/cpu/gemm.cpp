#include "kernels/cpu/gemm.h"

#include <Eigen/Core>

namespace minipipe::kernels::cpu {

namespace {
using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;
using Map = Eigen::Map<RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;

// Eigen picks its GEMM kernel from the expression; a transposed Map costs no copy.
template <class OpA, class OpB>
void multiply(const OpA& a, const OpB& b, float alpha, float beta, Map& c) {
  if (beta == 0.0f) {
    c.noalias() = alpha * (a * b);
  } else {
    if (beta != 1.0f) c *= beta;
    c.noalias() += alpha * (a * b);
  }
}
}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc) {
  if (m == 0 || n == 0) return;
  Map cm(c, m, n, Eigen::OuterStride<>(ldc));
  if (k == 0) {
    if (beta == 0.0f) cm.setZero(); else cm *= beta;
    return;
  }
  const ConstMap am(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  const ConstMap bm(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  if (!trans_a && !trans_b) multiply(am, bm, alpha, beta, cm);
  else if (trans_a && !trans_b) multiply(am.transpose(), bm, alpha, beta, cm);
  else if (!trans_a && trans_b) multiply(am, bm.transpose(), alpha, beta, cm);
  else multiply(am.transpose(), bm.transpose(), alpha, beta, cm);
}

}  // namespace minipipe::kernels::cpu
