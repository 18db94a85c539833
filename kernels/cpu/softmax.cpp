#include "kernels/cpu/softmax.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/lane_sum.h"
#include "kernels/cpu/threads.h"

namespace minipipe::kernels::cpu {

namespace {
// Rows are independent: each kernel spreads them over the kernel threads (threads.h).
// Row sums and maxima go through lane_sum16/lane_max, sixteen lanes at a time (simd.h): a
// single running float sum does not vectorise, and made softmax run at a quarter of memory
// speed; the compiler's own vectorisation left the max and the sum of exps scalar.
// A row is read twice, for its max and then for its exps; the second pass finds it in L1,
// but nothing overlaps the first pass's wait for memory unless the second asks for the next
// row ahead: that made softmax 20% faster on a 768-wide row (cpu_ops_benchmark).
inline void prefetch_next_row(const float* at, int64_t row_length) { __builtin_prefetch(at + row_length); }

// exp(x - max(x)) over one row, written to y unless y is null; returns max(x) and the sum of
// the exps (for softmax; log(sum) + max is logsumexp).
struct RowExps {
  float max;
  double total;
};
RowExps row_exps(const float* x, float* y, int64_t n) {
  const float m = lane_max(x, n);
  const Floats16 m16 = splat16(m);
  const double total = lane_sum16(
      n,
      [&](int64_t i) {
        prefetch_next_row(x + i, n);
        const Floats16 e = fast_exp(load16(x + i) - m16);
        if (y) store16(y + i, e);
        return e;
      },
      [&](int64_t i) {
        const float e = fast_exp(x[i] - m);
        if (y) y[i] = e;
        return e;
      });
  return {m, total};
}

float row_logsumexp(const float* x, int64_t n) {
  const RowExps e = row_exps(x, nullptr, n);
  return e.max + static_cast<float>(std::log(e.total));
}

void scale_row(float* y, int64_t n, float factor) {
  for (int64_t i = 0; i < n; ++i) y[i] *= factor;
}
}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  parallel_for(rows, 2 * cols, [&](int64_t r) {
    const RowExps e = row_exps(x + r * cols, y + r * cols, cols);
    scale_row(y + r * cols, cols, static_cast<float>(1.0 / e.total));
  });
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols) {
  parallel_for(rows, 3 * cols, [&](int64_t r) {
    const float* yr = y + r * cols;
    const float* dyr = dy + r * cols;
    const float dot = static_cast<float>(lane_sum16(
        cols, [&](int64_t i) { return load16(dyr + i) * load16(yr + i); }, [&](int64_t i) { return dyr[i] * yr[i]; }));
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
    const float* dyr = dy + r * cols;
    const float total =
        static_cast<float>(lane_sum16(cols, [&](int64_t i) { return load16(dyr + i); }, [&](int64_t i) { return dyr[i]; }));
    for (int64_t i = 0; i < cols; ++i)
      dx[r * cols + i] = dy[r * cols + i] - fast_exp(y[r * cols + i]) * total;
  });
}

void cross_entropy_forward(const float* logits, const int32_t* targets, float* row_loss,
                           float* probabilities, int64_t rows, int64_t classes, int32_t ignore_index) {
  parallel_for(rows, probabilities ? 2 * classes : classes, [&](int64_t r) {
    const float* xr = logits + r * classes;
    float logsumexp;
    if (probabilities) {
      float* pr = probabilities + r * classes;
      const RowExps e = row_exps(xr, pr, classes);
      logsumexp = e.max + static_cast<float>(std::log(e.total));
      scale_row(pr, classes, static_cast<float>(1.0 / e.total));
    } else {
      logsumexp = row_logsumexp(xr, classes);
    }
    row_loss[r] = targets[r] == ignore_index ? 0.0f : logsumexp - xr[targets[r]];
  });
}

void cross_entropy_backward(const float* probabilities, const int32_t* targets, float scale, float* dlogits,
                            int64_t rows, int64_t classes, int32_t ignore_index) {
  parallel_for(rows, 2 * classes, [&](int64_t r) {
    float* dr = dlogits + r * classes;
    if (targets[r] == ignore_index) {
      std::fill(dr, dr + classes, 0.0f);
      return;
    }
    const float* pr = probabilities + r * classes;
    for (int64_t i = 0; i < classes; ++i) dr[i] = scale * pr[i];
    dr[targets[r]] -= scale;
  });
}

}  // namespace minipipe::kernels::cpu
