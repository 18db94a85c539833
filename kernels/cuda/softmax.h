#pragma once
// Softmax family over the last dim of a contiguous [rows, cols] array, on a stream: one
// block per row. Same meaning as the CPU references in kernels/cpu/softmax.h.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace minipipe::kernels::cuda {

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols, cudaStream_t stream);
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, cudaStream_t stream);
void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols, cudaStream_t stream);
void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols,
                          cudaStream_t stream);
// Targets must already be checked (in range or ignore_index): the host does that.
void cross_entropy_forward(const float* logits, const int32_t* targets, float* row_loss, float* probabilities,
                           int64_t rows, int64_t classes, int32_t ignore_index, cudaStream_t stream);
// `scale` is read from device memory (the upstream gradient divided by the counted rows),
// so that the backward pass does not wait for the host.
void cross_entropy_backward(const float* probabilities, const int32_t* targets, const float* scale,
                            float* dlogits, int64_t rows, int64_t classes, int32_t ignore_index,
                            cudaStream_t stream);

}  // namespace minipipe::kernels::cuda
