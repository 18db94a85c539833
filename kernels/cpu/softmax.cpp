#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/fast_math.h"

namespace minipipe::kernels::cpu {

namespace {
float row_max(const float* x, int64_t n) {
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, x[i]);
  return m;
}
// log(sum(exp(x))), shifted by the max so that nothing overflows.
float row_logsumexp(const float* x, int64_t n) {
  const float m = row_max(x, n);
  float total = 0.0f;
  for (int64_t i = 0; i < n; ++i) total += fast_exp(x[i] - m);
  return m + std::log(total);
}
}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    const float m = row_max(xr, cols);
    float total = 0.0f;
    for (int64_t i = 0; i < cols; ++i) total += (yr[i] = fast_exp(xr[i] - m));
    const float inverse = 1.0f / total;
    for (int64_t i = 0; i < cols; ++i) yr[i] *= inverse;
  }
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    float dot = 0.0f;
    for (int64_t i = 0; i < cols; ++i) dot += dyr[i] * yr[i];
    for (int64_t i = 0; i < cols; ++i) dx[r * cols + i] = yr[i] * (dyr[i] - dot);
  }
}

void log_softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const float lse = row_logsumexp(x + r * cols, cols);
    for (int64_t i = 0; i < cols; ++i) y[r * cols + i] = x[r * cols + i] - lse;
  }
}

void log_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float total = 0.0f;
    for (int64_t i = 0; i < cols; ++i) total += dy[r * cols + i];
    for (int64_t i = 0; i < cols; ++i)
      dx[r * cols + i] = dy[r * cols + i] - fast_exp(y[r * cols + i]) * total;
  }
}

void cross_entropy_forward(const float* logits, const int32_t* targets, float* row_loss,
                           float* logsumexp, int64_t rows, int64_t classes, int32_t ignore_index) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = logits + r * classes;
    logsumexp[r] = row_logsumexp(xr, classes);
    row_loss[r] = targets[r] == ignore_index ? 0.0f : logsumexp[r] - xr[targets[r]];
  }
}

void cross_entropy_backward(const float* logits, const int32_t* targets, const float* logsumexp,
                            float scale, float* dlogits, int64_t rows, int64_t classes,
                            int32_t ignore_index) {
  for (int64_t r = 0; r < rows; ++r) {
    float* dr = dlogits + r * classes;
    if (targets[r] == ignore_index) {
      std::fill(dr, dr + classes, 0.0f);
      continue;
    }
    const float* xr = logits + r * classes;
    for (int64_t i = 0; i < classes; ++i) dr[i] = scale * fast_exp(xr[i] - logsumexp[r]);
    dr[targets[r]] -= scale;
  }
}

}  // namespace minipipe::kernels::cpu
