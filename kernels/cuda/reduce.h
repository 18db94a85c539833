#pragma once
// Sum over one dim of a contiguous tensor viewed as [outer, reduce, inner], on a stream.
// CPU reference: kernels/cpu/reduce.h (sum_dim).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace minipipe::kernels::cuda {

// out[o, i] = sum_r x[o, r, i]
void sum_dim(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner, cudaStream_t stream);

}  // namespace minipipe::kernels::cuda
