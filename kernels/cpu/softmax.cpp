#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/lane_sum.h"
#include "kernels/cpu/threads.h"

namespace minipipe::kernels::cpu {

namespace {
// Rows are independent: each kernel spreads them over the kernel threads (threads.h).
// Row sums and maxima go through lane_sum/lane_max: a single running float sum does not
// vectorise, and made softmax run at a quarter of memory speed.
// log(sum(exp(x))), shifted by the max so that nothing overflows.
float row_logsumexp(const float* x, int64_t n) {
  const float m = lane_max(x, n);
  const double total = lane_sum(n, [&](int64_t i) { return fast_exp(x[i] - m); });
  return m + static_cast<float>(std::log(total));
}
}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  parallel_for(rows, 2 * cols, [&](int64_t r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    const float m = lane_max(xr, cols);
    const double total = lane_sum(cols, [&](int64_t i) { return yr[i] = fast_exp(xr[i] - m); });
    const float inverse = static_cast<float>(1.0 / total);
    for (int64_t i = 0; i < cols; ++i) yr[i] *= inverse;
  });
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  parallel_for(rows, 3 * cols, [&](int64_t r) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    const float dot = static_cast<float>(lane_sum(cols, [&](int64_t i) { return dyr[i] * yr[i]; }));
    for (int64_t i = 0; i < cols; ++i) dx[r * cols + i] = yr[i] * (dyr[i] - dot);
  });
}

void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  parallel_for(rows, 2 * cols, [&](int64_t r) {
    const float lse = row_logsumexp(x + r * cols, cols);
    for (int64_t i = 0; i < cols; ++i) y[r * cols + i] = x[r * cols + i] - lse;
  });
}

void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  parallel_for(rows, 3 * cols, [&](int64_t r) {
    const float total = static_cast<float>(lane_sum(cols, [&](int64_t i) { return dy[r * cols + i]; }));
    for (int64_t i = 0; i < cols; ++i)
      dx[r * cols + i] = dy[r * cols + i] - fast_exp(y[r * cols + i]) * total;
  });
}

void cross_entropy_forward(const float* logits, const int32_t* targets, float* row_loss,
                           float* logsumexp, int64_t rows, int64_t classes, int32_t ignore_index) {
  parallel_for(rows, classes, [&](int64_t r) {
    const float* xr = logits + r * classes;
    logsumexp[r] = row_logsumexp(xr, classes);
    row_loss[r] = targets[r] == ignore_index ? 0.0f : logsumexp[r] - xr[targets[r]];
  });
}

void cross_entropy_backward(const float* logits, const int32_t* targets, const float* logsumexp,
                            float scale, float* dlogits, int64_t rows, int64_t classes,
                            int32_t ignore_index) {
  parallel_for(rows, 2 * classes, [&](int64_t r) {
    float* dr = dlogits + r * classes;
    if (targets[r] == ignore_index) {
      std::fill(dr, dr + classes, 0.0f);
      return;
    }
    const float* xr = logits + r * classes;
    for (int64_t i = 0; i < classes; ++i) dr[i] = scale * fast_exp(xr[i] - logsumexp[r]);
    dr[targets[r]] -= scale;
  });
}

}  // namespace minipipe::kernels::cpu
