#pragma once
// Layer norm over the last dim ([rows, cols]) and batch norm per channel ([n, channels,
// spatial]). The statistics kept for backward are the mean and 1/sqrt(var + eps).
#include <cstdint>

namespace minipipe::kernels::cpu {

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y,
                        float* mean, float* rstd, int64_t rows, int64_t cols, float eps);
// Writes dx; adds into dgamma and dbeta (the caller zeroes them).
void layer_norm_backward(const float* x, const float* gamma, const float* mean, const float* rstd,
                         const float* dy, float* dx, float* dgamma, float* dbeta, int64_t rows,
                         int64_t cols);

// Per-channel mean and biased variance over the batch and spatial positions.
void batch_norm_statistics(const float* x, float* mean, float* variance, int64_t n,
                           int64_t channels, int64_t spatial);
// y = (x - mean) * rstd * gamma + beta, per channel.
void batch_norm_apply(const float* x, const float* mean, const float* rstd, const float* gamma,
                      const float* beta, float* y, int64_t n, int64_t channels, int64_t spatial);
// With batch statistics (training) the mean and variance depend on x, which adds two terms
// to dx; with running statistics (eval) they are constants. Writes dx, dgamma and dbeta.
void batch_norm_backward(const float* x, const float* dy, const float* mean, const float* rstd,
                         const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t n,
                         int64_t channels, int64_t spatial, bool batch_statistics);

}  // namespace minipipe::kernels::cpu
