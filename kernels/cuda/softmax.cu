// One block per row: each thread strides along the row; block_sum/block_max (launch.cuh)
// combine the threads' partial results. Rows are read two or three times, from L2 for all
// but the first pass when a row fits there.
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/softmax.h"

namespace minipipe::kernels::cuda {

namespace {

// log(sum(exp(row))), shifted by the row's max so that nothing overflows.
__device__ float row_logsumexp(const float* row, int64_t cols) {
  float partial_max = -INFINITY;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) partial_max = fmaxf(partial_max, row[i]);
  const float m = block_max(partial_max);
  float partial = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) partial += expf(row[i] - m);
  return m + logf(block_sum(partial));
}

__global__ void softmax_forward_kernel(const float* x, float* y, int64_t cols) {
  const float* row = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  const float lse = row_logsumexp(row, cols);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) out[i] = expf(row[i] - lse);
}

__global__ void softmax_backward_kernel(const float* y, const float* dy, float* dx, int64_t cols) {
  const int64_t base = blockIdx.x * cols;
  float partial = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) partial += dy[base + i] * y[base + i];
  const float dot = block_sum(partial);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) dx[base + i] = y[base + i] * (dy[base + i] - dot);
}

__global__ void log_softmax_forward_kernel(const float* x, float* y, int64_t cols) {
  const float* row = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  const float lse = row_logsumexp(row, cols);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) out[i] = row[i] - lse;
}

__global__ void log_softmax_backward_kernel(const float* y, const float* dy, float* dx, int64_t cols) {
  const int64_t base = blockIdx.x * cols;
  float partial = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) partial += dy[base + i];
  const float total = block_sum(partial);
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) dx[base + i] = dy[base + i] - expf(y[base + i]) * total;
}

// probabilities (null in inference) gets the softmax for the backward pass.
__global__ void cross_entropy_forward_kernel(const float* logits, const int32_t* targets, float* row_loss,
                                             float* probabilities, int64_t classes, int32_t ignore_index) {
  const float* row = logits + blockIdx.x * classes;
  const float lse = row_logsumexp(row, classes);
  if (probabilities) {
    float* out = probabilities + blockIdx.x * classes;
    for (int64_t i = threadIdx.x; i < classes; i += blockDim.x) out[i] = expf(row[i] - lse);
  }
  if (threadIdx.x == 0) {
    const int32_t target = targets[blockIdx.x];
    row_loss[blockIdx.x] = target == ignore_index ? 0.0f : lse - row[target];
  }
}

__global__ void cross_entropy_backward_kernel(const float* probabilities, const int32_t* targets,
                                              const float* scale_at, float* dlogits, int64_t classes,
                                              int32_t ignore_index) {
  const int64_t base = blockIdx.x * classes;
  const int32_t target = targets[blockIdx.x];
  const float scale = *scale_at;
  for (int64_t i = threadIdx.x; i < classes; i += blockDim.x)
    dlogits[base + i] =
        target == ignore_index ? 0.0f : scale * (probabilities[base + i] - (i == target ? 1.0f : 0.0f));
}

}  // namespace

#define MINIPIPE_ROW_LAUNCH(kernel, rows, cols, stream, ...)                                     \
  do {                                                                                           \
    if ((rows) == 0 || (cols) == 0) return;                                                      \
    kernel<<<grid_for_rows(rows, #kernel), threads_per_row(cols), 0, (stream)>>>(__VA_ARGS__);   \
    MINIPIPE_CUDA_CHECK_LAUNCH();                                                                \
  } while (0)

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols, cudaStream_t stream) {
  MINIPIPE_ROW_LAUNCH(softmax_forward_kernel, rows, cols, stream, x, y, cols);
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, cudaStream_t stream) {
  MINIPIPE_ROW_LAUNCH(softmax_backward_kernel, rows, cols, stream, y, dy, dx, cols);
}

void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols, cudaStream_t stream) {
  MINIPIPE_ROW_LAUNCH(log_softmax_forward_kernel, rows, cols, stream, x, y, cols);
}

void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols,
                          cudaStream_t stream) {
  MINIPIPE_ROW_LAUNCH(log_softmax_backward_kernel, rows, cols, stream, y, dy, dx, cols);
}

void cross_entropy_forward(const float* logits, const int32_t* targets, float* row_loss, float* probabilities,
                           int64_t rows, int64_t classes, int32_t ignore_index, cudaStream_t stream) {
  MINIPIPE_ROW_LAUNCH(cross_entropy_forward_kernel, rows, classes, stream, logits, targets, row_loss,
                      probabilities, classes, ignore_index);
}

void cross_entropy_backward(const float* probabilities, const int32_t* targets, const float* scale,
                            float* dlogits, int64_t rows, int64_t classes, int32_t ignore_index,
                            cudaStream_t stream) {
  MINIPIPE_ROW_LAUNCH(cross_entropy_backward_kernel, rows, classes, stream, probabilities, targets, scale,
                      dlogits, classes, ignore_index);
}

}  // namespace minipipe::kernels::cuda
