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

// Training: per channel, the mean and rstd = 1/sqrt(var + eps) over the batch and spatial
// positions (biased variance), and the running statistics moved towards them by `momentum`
// (running_var towards the unbiased variance, as PyTorch does).
void batch_norm_training_statistics(const float* x, float* mean, float* rstd, float* running_mean,
                                    float* running_var, int64_t n, int64_t channels, int64_t spatial,
                                    float momentum, float eps);
// Eval: mean = running_mean, rstd = 1/sqrt(running_var + eps).
void batch_norm_eval_statistics(const float* running_mean, const float* running_var, float* mean,
                                float* rstd, int64_t channels, float eps);
// y = (x - mean) * rstd * gamma + beta, per channel.
void batch_norm_apply(const float* x, const float* mean, const float* rstd, const float* gamma,
                      const float* beta, float* y, int64_t n, int64_t channels, int64_t spatial);
// With batch statistics (training) the mean and variance depend on x, which adds two terms
// to dx; with running statistics (eval) they are constants. Writes dx, dgamma and dbeta.
void batch_norm_backward(const float* x, const float* dy, const float* mean, const float* rstd,
                         const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t n,
                         int64_t channels, int64_t spatial, bool batch_statistics);

}  // namespace minipipe::kernels::cpu
