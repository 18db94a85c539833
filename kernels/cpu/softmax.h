#pragma once
// Softmax family over the last dim of a contiguous [rows, cols] array.
#include <cstdint>

namespace minipipe::kernels::cpu {

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols);
// dx = y * (dy - sum(dy * y))
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols);
void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols);
// dx = dy - exp(y) * sum(dy)
void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols);

// Cross-entropy from logits, fused with log-softmax. Rows whose target equals ignore_index
// get loss 0. row_loss[r] = logsumexp(x_r) - x_r[target_r]. Where probabilities is not null
// it gets softmax(x) as well, for the backward pass (which then needs no exp: one pass at
// memory speed); inference passes null and writes nothing.
void cross_entropy_forward(const float* logits, const int32_t* targets, float* row_loss,
                           float* probabilities, int64_t rows, int64_t classes, int32_t ignore_index);
// dlogits = scale * (probabilities - onehot(target)) on counted rows, 0 on ignored rows.
void cross_entropy_backward(const float* probabilities, const int32_t* targets, float scale, float* dlogits,
                            int64_t rows, int64_t classes, int32_t ignore_index);

}  // namespace minipipe::kernels::cpu
