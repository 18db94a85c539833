#pragma once
// Reductions over one dim of a contiguous tensor viewed as [outer, reduce, inner].
// Several dims are reduced one at a time by the op layer.
#include <cstdint>

namespace minipipe::kernels::cpu {

// out[o, i] = sum_r x[o, r, i]
void sum_dim(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner);
// out[r] = sum of x[i]^2 over run r, i in [r * run, min(n, (r + 1) * run)): gradient norms,
// summed in double over the runs by the caller.
void squared_run_sums(const float* x, float* out, int64_t n, int64_t run);
// out[o, i] = max_r x[o, r, i]; argmax holds the first r reaching it.
void max_dim(const float* x, float* out, int32_t* argmax, int64_t outer, int64_t reduce,
             int64_t inner);
// dx[o, argmax[o, i], i] = dy[o, i], zero elsewhere (dx is written whole).
void max_dim_backward(const float* dy, const int32_t* argmax, float* dx, int64_t outer,
                      int64_t reduce, int64_t inner);

}  // namespace minipipe::kernels::cpu
