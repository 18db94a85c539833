#include "kernels/cuda/gemm.h"

#include <cublas_v2.h>

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"

namespace minipipe::kernels::cuda {

namespace {

[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw std::runtime_error(std::string("cuBLAS error ") + cublasGetStatusName(status) + " (" +
                           cublasGetStatusString(status) + ") in " + call + " at " + file + ":" +
                           std::to_string(line));
}

#define MINIPIPE_CUBLAS_CHECK(call)                                        \
  do {                                                                     \
    const cublasStatus_t minipipe_status_ = (call);                        \
    if (minipipe_status_ != CUBLAS_STATUS_SUCCESS)                         \
      throw_cublas_error(minipipe_status_, #call, __FILE__, __LINE__);     \
  } while (0)

struct HandleDeleter {
  void operator()(cublasContext* handle) const { cublasDestroy(handle); }
};
using Handle = std::unique_ptr<cublasContext, HandleDeleter>;

// One handle per (thread, device): a cuBLAS handle belongs to the device that was current
// when it was made, and must not be used by two threads at once (pipeline stages are threads).
cublasHandle_t handle_for_current_device() {
  thread_local std::map<int, Handle> handles;
  int device = 0;
  MINIPIPE_CUDA_CHECK(cudaGetDevice(&device));
  Handle& handle = handles[device];
  if (!handle) {
    cublasHandle_t created = nullptr;
    MINIPIPE_CUBLAS_CHECK(cublasCreate(&created));
    handle.reset(created);
    // Plain FP32 (no TF32 tensor-op rounding): results must match the CPU to 1e-4.
    MINIPIPE_CUBLAS_CHECK(cublasSetMathMode(created, CUBLAS_DEFAULT_MATH));
  }
  return handle.get();
}

int as_int(int64_t value, const char* what) {
  if (value > std::numeric_limits<int>::max())
    throw std::invalid_argument(std::string("cuda gemm: ") + what + " " + std::to_string(value) +
                                " exceeds cuBLAS's 32-bit sizes");
  return static_cast<int>(value);
}

// A leading dimension as cuBLAS accepts it. A row-major operand with no columns (k == 0)
// has a leading dimension of 0, which cuBLAS rejects even though it reads nothing there.
int leading_dimension(int64_t value, const char* what) { return as_int(std::max<int64_t>(value, 1), what); }

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc, cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  cublasHandle_t handle = handle_for_current_device();
  MINIPIPE_CUBLAS_CHECK(cublasSetStream(handle, stream));
  // cuBLAS is column-major. A row-major matrix read column-major is its transpose, so the
  // row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T: swap the operands.
  // k == 0 is fine: cuBLAS then only scales C by beta.
  MINIPIPE_CUBLAS_CHECK(cublasSgemm(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    as_int(n, "n"), as_int(m, "m"), as_int(k, "k"), &alpha, b,
                                    leading_dimension(ldb, "ldb"), a, leading_dimension(lda, "lda"), &beta, c,
                                    as_int(ldc, "ldc")));
}

void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
                  int64_t ldc, int64_t stride_c, int64_t batch, cudaStream_t stream) {
  if (m == 0 || n == 0 || batch == 0) return;
  cublasHandle_t handle = handle_for_current_device();
  MINIPIPE_CUBLAS_CHECK(cublasSetStream(handle, stream));
  // The same operand swap as gemm() above.
  MINIPIPE_CUBLAS_CHECK(cublasSgemmStridedBatched(
      handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(n, "n"), as_int(m, "m"),
      as_int(k, "k"), &alpha, b, leading_dimension(ldb, "ldb"), stride_b, a, leading_dimension(lda, "lda"), stride_a,
      &beta, c, as_int(ldc, "ldc"), stride_c, as_int(batch, "batch")));
}

}  // namespace minipipe::kernels::cuda
