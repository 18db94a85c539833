#pragma once
// Reductions over one dim of a contiguous tensor viewed as [outer, reduce, inner], on a
// stream. CPU references: kernels/cpu/reduce.h.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace minipipe::kernels::cuda {

// out[o, i] = sum_r x[o, r, i]
void sum_dim(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner, cudaStream_t stream);
// out[r] = sum of x[i]^2 over run r, i in [r * run, min(n, (r + 1) * run)).
void squared_run_sums(const float* x, float* out, int64_t n, int64_t run, cudaStream_t stream);
// out[o, i] = max_r x[o, r, i]; argmax holds the first r reaching it (NaN only when r = 0
// holds it, as on the CPU).
void max_dim(const float* x, float* out, int32_t* argmax, int64_t outer, int64_t reduce, int64_t inner,
             cudaStream_t stream);
// dx[o, argmax[o, i], i] = dy[o, i], zero elsewhere (dx is written whole).
void max_dim_backward(const float* dy, const int32_t* argmax, float* dx, int64_t outer, int64_t reduce,
                      int64_t inner, cudaStream_t stream);

}  // namespace minipipe::kernels::cuda
