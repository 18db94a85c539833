#include "kernels/cpu/reduce.h"

#include <cstring>

#include "kernels/cpu/lane_sum.h"

namespace minipipe::kernels::cpu {

void sum_dim(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner) {
  for (int64_t o = 0; o < outer; ++o) {
    const float* block = x + o * reduce * inner;
    float* row = out + o * inner;
    if (inner == 1) {
      *row = static_cast<float>(lane_sum(reduce, [&](int64_t r) { return block[r]; }));
      continue;
    }
    std::memset(row, 0, static_cast<size_t>(inner) * sizeof(float));
    for (int64_t r = 0; r < reduce; ++r) {
      const float* slice = block + r * inner;
      for (int64_t i = 0; i < inner; ++i) row[i] += slice[i];
    }
  }
}

void max_dim(const float* x, float* out, int32_t* argmax, int64_t outer, int64_t reduce,
             int64_t inner) {
  for (int64_t o = 0; o < outer; ++o) {
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
  }
}

void max_dim_backward(const float* dy, const int32_t* argmax, float* dx, int64_t outer,
                      int64_t reduce, int64_t inner) {
  std::memset(dx, 0, static_cast<size_t>(outer * reduce * inner) * sizeof(float));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i)
      dx[(o * reduce + argmax[o * inner + i]) * inner + i] = dy[o * inner + i];
}

}  // namespace minipipe::kernels::cpu
