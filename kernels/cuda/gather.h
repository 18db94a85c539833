#pragma once
// Index-driven kernels on device memory, on a stream: embedding lookup and its backward, and
// dropout. Same meaning as the CPU references in kernels/cpu/gather.h.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace minipipe::kernels::cuda {

// Indices must already be checked to lie in the table (the op layer does that).
void embedding_forward(const float* weight, const int32_t* indices, float* out, int64_t count, int64_t dim,
                       cudaStream_t stream);
// dweight[indices[i], :] += dout[i, :] by atomicAdd: repeated indices accumulate, in an order
// that varies from run to run (float sums then differ in the last bits).
void embedding_backward(const float* dout, const int32_t* indices, float* dweight, int64_t count, int64_t dim,
                        cudaStream_t stream);

// The same mask as the CPU for the same (seed, stream, element_offset): both draw element e
// from Philox (kernels/philox.h), a pure function of the counter.
void dropout(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t stream_id,
             int64_t element_offset, cudaStream_t stream);

}  // namespace minipipe::kernels::cuda
