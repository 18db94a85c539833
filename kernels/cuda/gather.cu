#include "kernels/cuda/check.h"
#include "kernels/cuda/gather.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/philox.h"

namespace minipipe::kernels::cuda {

namespace {

// One thread per output element; consecutive threads copy consecutive floats of a row.
__global__ void embedding_forward_kernel(const float* weight, const int32_t* indices, float* out, int64_t count,
                                         int64_t dim) {
  MINIPIPE_GRID_STRIDE_LOOP(i, count * dim) {
    out[i] = weight[static_cast<int64_t>(indices[i / dim]) * dim + i % dim];
  }
}

__global__ void embedding_backward_kernel(const float* dout, const int32_t* indices, float* dweight, int64_t count,
                                          int64_t dim) {
  MINIPIPE_GRID_STRIDE_LOOP(i, count * dim) {
    atomicAdd(dweight + static_cast<int64_t>(indices[i / dim]) * dim + i % dim, dout[i]);
  }
}

// One thread per Philox block: block b holds the uniforms of elements 4b..4b+3 (counted from
// the start of the stream, philox_uniform's numbering), of which those in
// [element_offset, element_offset + n) are used.
__global__ void dropout_kernel(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t stream_id,
                               int64_t element_offset, int64_t first_block, int64_t blocks) {
  const float keep_scale = 1.0f / (1.0f - p);
  MINIPIPE_GRID_STRIDE_LOOP(b, blocks) {
    const Philox4 block = philox4x32(seed, stream_id, static_cast<uint64_t>(first_block + b));
    for (int word = 0; word < 4; ++word) {
      const int64_t i = (first_block + b) * 4 + word - element_offset;  // index into x
      if (i >= 0 && i < n) y[i] = uniform_from_bits(block.v[word]) >= p ? x[i] * keep_scale : 0.0f;
    }
  }
}

}  // namespace

void embedding_forward(const float* weight, const int32_t* indices, float* out, int64_t count, int64_t dim,
                       cudaStream_t stream) {
  if (count * dim == 0) return;
  embedding_forward_kernel<<<blocks_for(count * dim), kThreads, 0, stream>>>(weight, indices, out, count, dim);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void embedding_backward(const float* dout, const int32_t* indices, float* dweight, int64_t count, int64_t dim,
                        cudaStream_t stream) {
  if (count * dim == 0) return;
  embedding_backward_kernel<<<blocks_for(count * dim), kThreads, 0, stream>>>(dout, indices, dweight, count, dim);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void dropout(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t stream_id,
             int64_t element_offset, cudaStream_t stream) {
  if (n == 0) return;
  const int64_t first_block = element_offset / 4, last_block = (element_offset + n - 1) / 4;
  const int64_t blocks = last_block - first_block + 1;
  dropout_kernel<<<blocks_for(blocks), kThreads, 0, stream>>>(x, y, n, p, seed, stream_id, element_offset,
                                                              first_block, blocks);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

}  // namespace minipipe::kernels::cuda
