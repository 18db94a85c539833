// Layer norm: one block per row (rows are the model width, a few hundred to a few thousand
// floats). Batch norm: one block per channel, its threads striding over the batch and the
// spatial positions. Both compute the mean first and then the squared deviations from it, as
// the CPU does, rather than E[x^2] - E[x]^2, which cancels badly.
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/normalization.h"

#include <stdexcept>

namespace minipipe::kernels::cuda {

namespace {

__global__ void layer_norm_forward_kernel(const float* x, const float* gamma, const float* beta, float* y,
                                          float* mean, float* rstd, int64_t cols, float eps) {
  const float* row = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  float partial = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) partial += row[i];
  const float mu = block_sum(partial) / static_cast<float>(cols);
  partial = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) partial += (row[i] - mu) * (row[i] - mu);
  const float inv = rsqrtf(block_sum(partial) / static_cast<float>(cols) + eps);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) out[i] = (row[i] - mu) * inv * gamma[i] + beta[i];
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = mu;
    rstd[blockIdx.x] = inv;
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma, one block per row.
__global__ void layer_norm_backward_dx_kernel(const float* x, const float* gamma, const float* mean,
                                              const float* rstd, const float* dy, float* dx, int64_t cols) {
  const int64_t base = blockIdx.x * cols;
  const float mu = mean[blockIdx.x], inv = rstd[blockIdx.x];
  float partial_g = 0.0f, partial_g_xhat = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float g = dy[base + i] * gamma[i];
    partial_g += g;
    partial_g_xhat += g * (x[base + i] - mu) * inv;
  }
  const float mean_g = block_sum(partial_g) / static_cast<float>(cols);
  const float mean_g_xhat = block_sum(partial_g_xhat) / static_cast<float>(cols);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    const float xhat = (x[base + i] - mu) * inv;
    dx[base + i] = inv * (dy[base + i] * gamma[i] - mean_g - xhat * mean_g_xhat);
  }
}

// dgamma += sum over rows of dy * xhat, dbeta += sum of dy. Thread = one column of one slab
// of kRowsPerSlab rows (so neighbouring threads read neighbouring floats); each slab adds its
// sums into the result with one atomicAdd per column.
constexpr int64_t kRowsPerSlab = 64;

__global__ void layer_norm_backward_parameters_kernel(const float* x, const float* mean, const float* rstd,
                                                      const float* dy, float* dgamma, float* dbeta, int64_t rows,
                                                      int64_t cols) {
  const int64_t column = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (column >= cols) return;
  const int64_t first = blockIdx.y * kRowsPerSlab, last = min(rows, first + kRowsPerSlab);
  float sum_dy_xhat = 0.0f, sum_dy = 0.0f;
  for (int64_t r = first; r < last; ++r) {
    const float g = dy[r * cols + column];
    sum_dy_xhat += g * (x[r * cols + column] - mean[r]) * rstd[r];
    sum_dy += g;
  }
  atomicAdd(dgamma + column, sum_dy_xhat);
  atomicAdd(dbeta + column, sum_dy);
}

// Calls value(j) for j in [0, n * spatial) of channel blockIdx.x and sums over the block.
template <class Value>
__device__ float channel_sum(int64_t n, int64_t channels, int64_t spatial, Value value) {
  float partial = 0.0f;
  for (int64_t j = threadIdx.x; j < n * spatial; j += blockDim.x)
    partial += value(((j / spatial) * channels + blockIdx.x) * spatial + j % spatial);
  return block_sum(partial);
}

__global__ void batch_norm_training_statistics_kernel(const float* x, float* mean, float* rstd,
                                                      float* running_mean, float* running_var, int64_t n,
                                                      int64_t channels, int64_t spatial, float momentum,
                                                      float eps) {
  const float count = static_cast<float>(n * spatial);
  const float mu = channel_sum(n, channels, spatial, [&](int64_t i) { return x[i]; }) / count;
  const float variance =
      channel_sum(n, channels, spatial, [&](int64_t i) { return (x[i] - mu) * (x[i] - mu); }) / count;
  if (threadIdx.x == 0) {
    const int c = blockIdx.x;
    mean[c] = mu;
    rstd[c] = 1.0f / sqrtf(variance + eps);
    running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mu;
    running_var[c] = (1.0f - momentum) * running_var[c] + momentum * variance * (count / (count - 1.0f));
  }
}

__global__ void batch_norm_eval_statistics_kernel(const float* running_mean, const float* running_var, float* mean,
                                                  float* rstd, int64_t channels, float eps) {
  MINIPIPE_GRID_STRIDE_LOOP(c, channels) {
    mean[c] = running_mean[c];
    rstd[c] = 1.0f / sqrtf(running_var[c] + eps);
  }
}

__global__ void batch_norm_apply_kernel(const float* x, const float* mean, const float* rstd, const float* gamma,
                                        const float* beta, float* y, int64_t n, int64_t channels, int64_t spatial) {
  MINIPIPE_GRID_STRIDE_LOOP(i, n * channels * spatial) {
    const int64_t c = (i / spatial) % channels;
    const float scale = rstd[c] * gamma[c], shift = beta[c] - mean[c] * scale;
    y[i] = x[i] * scale + shift;
  }
}

__global__ void batch_norm_backward_kernel(const float* x, const float* dy, const float* mean, const float* rstd,
                                           const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t n,
                                           int64_t channels, int64_t spatial, bool batch_statistics) {
  const int c = blockIdx.x;
  const float mu = mean[c], inv = rstd[c], count = static_cast<float>(n * spatial);
  const float sum_dy = channel_sum(n, channels, spatial, [&](int64_t i) { return dy[i]; });
  const float sum_dy_xhat = channel_sum(n, channels, spatial, [&](int64_t i) { return dy[i] * (x[i] - mu) * inv; });
  if (threadIdx.x == 0) {
    dgamma[c] = sum_dy_xhat;
    dbeta[c] = sum_dy;
  }
  const float k = gamma[c] * inv;
  const float mean_dy = batch_statistics ? sum_dy / count : 0.0f;
  const float mean_dy_xhat = batch_statistics ? sum_dy_xhat / count : 0.0f;
  for (int64_t j = threadIdx.x; j < n * spatial; j += blockDim.x) {
    const int64_t i = ((j / spatial) * channels + c) * spatial + j % spatial;
    dx[i] = k * (dy[i] - mean_dy - (x[i] - mu) * inv * mean_dy_xhat);
  }
}

}  // namespace

void layer_norm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                        int64_t rows, int64_t cols, float eps, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  layer_norm_forward_kernel<<<grid_for_rows(rows, "layer_norm"), threads_per_row(cols), 0, stream>>>(
      x, gamma, beta, y, mean, rstd, cols, eps);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void layer_norm_backward(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy,
                         float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const int64_t slabs = (rows + kRowsPerSlab - 1) / kRowsPerSlab;
  if (slabs > 65535) throw std::invalid_argument("layer_norm: more than 65535 * 64 rows in one backward pass");
  layer_norm_backward_dx_kernel<<<grid_for_rows(rows, "layer_norm"), threads_per_row(cols), 0, stream>>>(
      x, gamma, mean, rstd, dy, dx, cols);
  MINIPIPE_CUDA_CHECK_LAUNCH();
  const dim3 grid(static_cast<unsigned>((cols + kThreads - 1) / kThreads), static_cast<unsigned>(slabs));
  layer_norm_backward_parameters_kernel<<<grid, kThreads, 0, stream>>>(x, mean, rstd, dy, dgamma, dbeta, rows, cols);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void batch_norm_training_statistics(const float* x, float* mean, float* rstd, float* running_mean,
                                    float* running_var, int64_t n, int64_t channels, int64_t spatial,
                                    float momentum, float eps, cudaStream_t stream) {
  if (channels == 0) return;
  const unsigned threads = threads_per_row(n * spatial);
  batch_norm_training_statistics_kernel<<<grid_for_rows(channels, "batch_norm"), threads, 0, stream>>>(
      x, mean, rstd, running_mean, running_var, n, channels, spatial, momentum, eps);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void batch_norm_eval_statistics(const float* running_mean, const float* running_var, float* mean, float* rstd,
                                int64_t channels, float eps, cudaStream_t stream) {
  if (channels == 0) return;
  batch_norm_eval_statistics_kernel<<<blocks_for(channels), kThreads, 0, stream>>>(running_mean, running_var, mean,
                                                                                   rstd, channels, eps);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void batch_norm_apply(const float* x, const float* mean, const float* rstd, const float* gamma, const float* beta,
                      float* y, int64_t n, int64_t channels, int64_t spatial, cudaStream_t stream) {
  if (n * channels * spatial == 0) return;
  batch_norm_apply_kernel<<<blocks_for(n * channels * spatial), kThreads, 0, stream>>>(x, mean, rstd, gamma, beta, y,
                                                                                       n, channels, spatial);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void batch_norm_backward(const float* x, const float* dy, const float* mean, const float* rstd, const float* gamma,
                         float* dx, float* dgamma, float* dbeta, int64_t n, int64_t channels, int64_t spatial,
                         bool batch_statistics, cudaStream_t stream) {
  if (channels == 0) return;
  const unsigned threads = threads_per_row(n * spatial);
  batch_norm_backward_kernel<<<grid_for_rows(channels, "batch_norm"), threads, 0, stream>>>(
      x, dy, mean, rstd, gamma, dx, dgamma, dbeta, n, channels, spatial, batch_statistics);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

}  // namespace minipipe::kernels::cuda
