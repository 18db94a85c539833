#pragma once
// Layer norm and batch norm on device memory, on a stream. Same meaning as the CPU references
// in kernels/cpu/normalization.h.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace minipipe::kernels::cuda {

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                        int64_t rows, int64_t cols, float eps, cudaStream_t stream);
// Writes dx; adds into dgamma and dbeta (the caller zeroes them) by atomicAdd of per-block
// partial sums, so their last bits vary from run to run.
void layer_norm_backward(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy,
                         float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols, cudaStream_t stream);

void batch_norm_training_statistics(const float* x, float* mean, float* rstd, float* running_mean,
                                    float* running_var, int64_t n, int64_t channels, int64_t spatial,
                                    float momentum, float eps, cudaStream_t stream);
void batch_norm_eval_statistics(const float* running_mean, const float* running_var, float* mean, float* rstd,
                                int64_t channels, float eps, cudaStream_t stream);
void batch_norm_apply(const float* x, const float* mean, const float* rstd, const float* gamma, const float* beta,
                      float* y, int64_t n, int64_t channels, int64_t spatial, cudaStream_t stream);
void batch_norm_backward(const float* x, const float* dy, const float* mean, const float* rstd, const float* gamma,
                         float* dx, float* dgamma, float* dbeta, int64_t n, int64_t channels, int64_t spatial,
                         bool batch_statistics, cudaStream_t stream);

}  // namespace minipipe::kernels::cuda
