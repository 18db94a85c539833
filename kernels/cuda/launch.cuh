#pragma once
// Launch shapes shared by the .cu files: one thread per element over a grid-stride loop, and
// block-wide reductions for the row kernels (one block per row).
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace minipipe::kernels::cuda {

constexpr int kThreads = 256;

// Enough blocks to cover `count` with a grid-stride loop, capped where more would only queue.
inline unsigned blocks_for(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

// Row kernels (one block per row, channel, ...): a warp for short rows, up to 1024 threads
// for long ones, always a multiple of 32 as block_reduce needs.
inline unsigned threads_per_row(int64_t length) {
  int64_t threads = 32;
  while (threads < length && threads < 1024) threads *= 2;
  return static_cast<unsigned>(threads);
}

// Rows go on the grid's x dimension, which holds up to 2^31 - 1 blocks.
inline unsigned grid_for_rows(int64_t rows, const char* kernel) {
  if (rows > 2147483647) throw std::invalid_argument(std::string(kernel) + ": more than 2^31 - 1 rows");
  return static_cast<unsigned>(rows);
}

// for (int64_t i = first; i < count; i += stride) over the whole grid.
#define MINIPIPE_GRID_STRIDE_LOOP(i, count)                                              \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (count);           \
       i += int64_t{gridDim.x} * blockDim.x)

// An N-d index space read through two sets of strides (the two inputs of a broadcasting
// op, or the source and destination of a copy). Passed to kernels by value: they read
// shape and strides from their parameter space. Dims at most 16, as kernels/cpu/elementwise.h.
//
// The constructor drops size-1 dims and merges neighbouring dims that are laid out as one in
// both stride sets, so that every thread divides its index once per dim that is left, less
// the outermost: a contiguous tensor is one dim (no division), a row-wise bias broadcast two
// (one). Integer division costs a GPU some twenty instructions, enough to make a strided
// kernel compute-bound.
struct TwoStrideLayout {
  static constexpr int kMaxDims = 16;
  int64_t shape[kMaxDims], first[kMaxDims], second[kMaxDims];
  int dims;
  int64_t count;  // elements in shape

  TwoStrideLayout(const int64_t* shape_, const int64_t* first_, const int64_t* second_, int dims_)
      : dims(0), count(1) {
    for (int d = 0; d < dims_; ++d) {
      count *= shape_[d];
      if (shape_[d] == 1) continue;
      const bool continues_outer = dims > 0 && first[dims - 1] == first_[d] * shape_[d] &&
                                   second[dims - 1] == second_[d] * shape_[d];
      if (!continues_outer) ++dims;
      shape[dims - 1] = continues_outer ? shape[dims - 1] * shape_[d] : shape_[d];
      first[dims - 1] = first_[d];
      second[dims - 1] = second_[d];
    }
    if (dims == 0) {  // one element
      dims = 1;
      shape[0] = 1;
      first[0] = second[0] = 0;
    }
  }

  // One dim, both sets of strides 1: a plain contiguous walk.
  bool contiguous() const { return dims == 1 && first[0] == 1 && second[0] == 1; }

  // The offsets of flat index i (row-major over shape) under each set of strides.
  __device__ void offsets(int64_t i, int64_t& first_offset, int64_t& second_offset) const {
    first_offset = second_offset = 0;
    for (int d = dims - 1; d > 0; --d) {  // the last dim varies fastest
      const int64_t outer = i / shape[d], coordinate = i - outer * shape[d];
      i = outer;
      first_offset += coordinate * first[d];
      second_offset += coordinate * second[d];
    }
    first_offset += i * first[0];  // what is left of i is the outermost coordinate
    second_offset += i * second[0];
  }
};

// Sum and max over the threads of a block (blockDim.x a multiple of 32, at most 1024): a
// shuffle within each warp, then the warps' results through shared memory. Every thread
// gets the result. Must be reached by all threads of the block.
template <class Combine>
__device__ float block_reduce(float value, Combine combine) {
  __shared__ float warp_results[32];
  for (int offset = 16; offset > 0; offset /= 2)
    value = combine(value, __shfl_xor_sync(0xffffffffu, value, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();  // warp_results may still be read by a previous reduction
  if (lane == 0) warp_results[warp] = value;
  __syncthreads();
  value = lane < warps ? warp_results[lane] : combine.identity();
  for (int offset = 16; offset > 0; offset /= 2)
    value = combine(value, __shfl_xor_sync(0xffffffffu, value, offset));
  return value;
}

struct SumOp {
  __device__ float identity() const { return 0.0f; }
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ float identity() const { return -INFINITY; }
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

__device__ inline float block_sum(float value) { return block_reduce(value, SumOp{}); }
__device__ inline float block_max(float value) { return block_reduce(value, MaxOp{}); }

}  // namespace minipipe::kernels::cuda
