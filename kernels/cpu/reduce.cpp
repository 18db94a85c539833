#include "kernels/cpu/reduce.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/lane_sum.h"
#include "kernels/cpu/threads.h"

namespace minipipe::kernels::cpu {

// Each output is summed over `reduce` in order, whichever kernel thread (threads.h) takes it:
// threads take ranges of the outputs, as [outer, inner] flattened.
void sum_dim(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner) {
  parallel_ranges(outer * inner, reduce, [&](int64_t begin, int64_t end) {
    if (inner == 1) {
      for (int64_t o = begin; o < end; ++o)
        out[o] = static_cast<float>(lane_sum(reduce, [&](int64_t r) { return x[o * reduce + r]; }));
      return;
    }
    for (int64_t o = begin / inner; o * inner < end; ++o) {  // columns [first, last) of outer row o
      const int64_t first = std::max(begin - o * inner, int64_t{0}), last = std::min(end - o * inner, inner);
      const float* block = x + o * reduce * inner;
      float* row = out + o * inner;
      std::fill(row + first, row + last, 0.0f);
      for (int64_t r = 0; r < reduce; ++r) {
        const float* slice = block + r * inner;
        for (int64_t i = first; i < last; ++i) row[i] += slice[i];
      }
    }
  });
}

// Sixteen float lanes per run (lane_sum.h): a plain loop is one dependent add per entry.
void squared_run_sums(const float* x, float* out, int64_t n, int64_t run) {
  const int64_t runs = (n + run - 1) / run;
  parallel_ranges(runs, run, [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      const float* begin = x + r * run;
      out[r] = static_cast<float>(lane_sum(std::min(run, n - r * run), [&](int64_t i) { return begin[i] * begin[i]; }));
    }
  });
}

void max_dim(const float* x, float* out, int32_t* argmax, int64_t outer, int64_t reduce,
             int64_t inner) {
  parallel_for(outer, reduce * inner, [&](int64_t o) {
    const float* block = x + o * reduce * inner;
    for (int64_t i = 0; i < inner; ++i) {
      float best = block[i];
      int32_t best_index = 0;
      for (int64_t r = 1; r < reduce; ++r) {
        const float v = block[r * inner + i];
        if (v > best) {
          best = v;
          best_index = static_cast<int32_t>(r);
        }
      }
      out[o * inner + i] = best;
      argmax[o * inner + i] = best_index;
    }
  });
}

void max_dim_backward(const float* dy, const int32_t* argmax, float* dx, int64_t outer,
                      int64_t reduce, int64_t inner) {
  std::memset(dx, 0, static_cast<size_t>(outer * reduce * inner) * sizeof(float));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i)
      dx[(o * reduce + argmax[o * inner + i]) * inner + i] = dy[o * inner + i];
}

}  // namespace minipipe::kernels::cpu
