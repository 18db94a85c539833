#pragma once
// Row-major GEMM on the GPU through cuBLAS, with the same arguments and meaning as the CPU
// kernel (kernels/cpu/gemm.h): C = alpha * op(A) * op(B) + beta * C. Runs on the current
// device, on `stream`. TF32 stays off, so that results match the CPU to float rounding.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace minipipe::kernels::cuda {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
          int64_t ldc, cudaStream_t stream);
// `batch` GEMMs in one cuBLAS call (cublasSgemmStridedBatched): matrix i of each operand
// starts i * stride after its first.
void gemm_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                  int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta, float* c,
                  int64_t ldc, int64_t stride_c, int64_t batch, cudaStream_t stream);

}  // namespace minipipe::kernels::cuda
