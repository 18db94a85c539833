#include "kernels/cpu/normalization.h"

#include <cmath>

#include "kernels/cpu/lane_sum.h"
#include "kernels/cpu/threads.h"

namespace minipipe::kernels::cpu {

// Rows (layer norm) and channels (batch norm) are independent and spread over the kernel
// threads; parameter gradients summed over rows are spread by columns, each column summed
// over the rows in order, so that no result depends on the thread count (threads.h).

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y,
                        float* mean, float* rstd, int64_t rows, int64_t cols, float eps) {
  parallel_for(rows, 3 * cols, [&](int64_t r) {
    const float* xr = x + r * cols;
    const float mu = static_cast<float>(lane_sum(cols, [&](int64_t i) { return xr[i]; }) / cols);
    const double squares = lane_sum(cols, [&](int64_t i) { return (xr[i] - mu) * (xr[i] - mu); });
    const float inv = 1.0f / std::sqrt(static_cast<float>(squares / cols) + eps);
    for (int64_t i = 0; i < cols; ++i) y[r * cols + i] = (xr[i] - mu) * inv * gamma[i] + beta[i];
    mean[r] = mu;
    rstd[r] = inv;
  });
}

namespace {
// Row r's terms of dgamma and dbeta, columns [begin, end).
void add_parameter_gradients(const float* xr, const float* dyr, float mu, float inv, float* dgamma, float* dbeta,
                             int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    dgamma[i] += dyr[i] * ((xr[i] - mu) * inv);
    dbeta[i] += dyr[i];
  }
}
}  // namespace

void layer_norm_backward(const float* x, const float* gamma, const float* mean, const float* rstd,
                         const float* dy, float* dx, float* dgamma, float* dbeta, int64_t rows,
                         int64_t cols) {
  // dgamma and dbeta sum over the rows in row order, each column on one thread. On one
  // kernel thread a row adds its terms while it is in L1 for dx (the same operations in the
  // same order: the same bits), instead of a second pass over x and dy.
  const bool one_thread = kernel_threads() == 1;
  parallel_for(rows, 3 * cols, [&](int64_t r) {
    const float* xr = x + r * cols;
    const float* dyr = dy + r * cols;
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), with g = dy * gamma.
    const float mu = mean[r], inv = rstd[r];
    const auto xhat = [&](int64_t i) { return (xr[i] - mu) * inv; };
    const float mean_g = static_cast<float>(lane_sum(cols, [&](int64_t i) { return dyr[i] * gamma[i]; }) / cols);
    const float mean_g_xhat =
        static_cast<float>(lane_sum(cols, [&](int64_t i) { return dyr[i] * gamma[i] * xhat(i); }) / cols);
    for (int64_t i = 0; i < cols; ++i) dx[r * cols + i] = inv * (dyr[i] * gamma[i] - mean_g - xhat(i) * mean_g_xhat);
    if (one_thread) add_parameter_gradients(xr, dyr, mu, inv, dgamma, dbeta, 0, cols);
  });
  if (one_thread) return;
  parallel_ranges(cols, 2 * rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = 0; r < rows; ++r)
      add_parameter_gradients(x + r * cols, dy + r * cols, mean[r], rstd[r], dgamma, dbeta, begin, end);
  });
}

void batch_norm_training_statistics(const float* x, float* mean, float* rstd, float* running_mean,
                                    float* running_var, int64_t n, int64_t channels, int64_t spatial,
                                    float momentum, float eps) {
  const double count = static_cast<double>(n * spatial);
  const float unbias = static_cast<float>(count) / (static_cast<float>(count) - 1.0f);
  parallel_for(channels, 2 * n * spatial, [&](int64_t c) {
    double total = 0.0;
    for (int64_t b = 0; b < n; ++b) {
      const float* xb = x + (b * channels + c) * spatial;
      total += lane_sum(spatial, [&](int64_t s) { return xb[s]; });
    }
    const float mu = static_cast<float>(total / count);
    double squares = 0.0;
    for (int64_t b = 0; b < n; ++b) {
      const float* xb = x + (b * channels + c) * spatial;
      squares += lane_sum(spatial, [&](int64_t s) { return (xb[s] - mu) * (xb[s] - mu); });
    }
    const float variance = static_cast<float>(squares / count);
    mean[c] = mu;
    rstd[c] = 1.0f / std::sqrt(variance + eps);
    running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mu;
    running_var[c] = (1.0f - momentum) * running_var[c] + momentum * variance * unbias;
  });
}

void batch_norm_eval_statistics(const float* running_mean, const float* running_var, float* mean,
                                float* rstd, int64_t channels, float eps) {
  for (int64_t c = 0; c < channels; ++c) {
    mean[c] = running_mean[c];
    rstd[c] = 1.0f / std::sqrt(running_var[c] + eps);
  }
}

void batch_norm_apply(const float* x, const float* mean, const float* rstd, const float* gamma,
                      const float* beta, float* y, int64_t n, int64_t channels, int64_t spatial) {
  parallel_for(n * channels, 2 * spatial, [&](int64_t plane) {  // plane = b * channels + c
    const int64_t c = plane % channels;
    const float scale = rstd[c] * gamma[c], shift = beta[c] - mean[c] * scale;
    const int64_t base = plane * spatial;
    for (int64_t s = 0; s < spatial; ++s) y[base + s] = x[base + s] * scale + shift;
  });
}

void batch_norm_backward(const float* x, const float* dy, const float* mean, const float* rstd,
                         const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t n,
                         int64_t channels, int64_t spatial, bool batch_statistics) {
  const double count = static_cast<double>(n * spatial);
  parallel_for(channels, 5 * n * spatial, [&](int64_t c) {
    const float mu = mean[c], inv = rstd[c];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t b = 0; b < n; ++b) {
      const float* xb = x + (b * channels + c) * spatial;
      const float* dyb = dy + (b * channels + c) * spatial;
      sum_dy += lane_sum(spatial, [&](int64_t s) { return dyb[s]; });
      sum_dy_xhat += lane_sum(spatial, [&](int64_t s) { return dyb[s] * (xb[s] - mu) * inv; });
    }
    dgamma[c] = static_cast<float>(sum_dy_xhat);
    dbeta[c] = static_cast<float>(sum_dy);
    const float k = gamma[c] * inv;
    const float mean_dy = batch_statistics ? static_cast<float>(sum_dy / count) : 0.0f;
    const float mean_dy_xhat = batch_statistics ? static_cast<float>(sum_dy_xhat / count) : 0.0f;
    for (int64_t b = 0; b < n; ++b) {
      const int64_t base = (b * channels + c) * spatial;
      for (int64_t s = 0; s < spatial; ++s) {
        const float xhat = (x[base + s] - mu) * inv;
        dx[base + s] = k * (dy[base + s] - mean_dy - xhat * mean_dy_xhat);
      }
    }
  });
}

}  // namespace minipipe::kernels::cpu
