#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.h"

namespace minipipe::kernels::cuda {

namespace {

// inner == 1 (a row sum): one block per row, its threads striding along the row, so that
// neighbouring threads read neighbouring elements.
__global__ void sum_rows_kernel(const float* x, float* out, int64_t reduce) {
  const float* row = x + blockIdx.x * reduce;
  float partial = 0.0f;
  for (int64_t r = threadIdx.x; r < reduce; r += blockDim.x) partial += row[r];
  const float total = block_sum(partial);
  if (threadIdx.x == 0) out[blockIdx.x] = total;
}

// inner > 1: one thread per output, walking down its column; neighbouring threads read
// neighbouring columns, so each step is one coalesced row read.
__global__ void sum_columns_kernel(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner) {
  MINIPIPE_GRID_STRIDE_LOOP(index, outer * inner) {
    const int64_t o = index / inner, i = index % inner;
    const float* column = x + o * reduce * inner + i;
    float total = 0.0f;
    for (int64_t r = 0; r < reduce; ++r) total += column[r * inner];
    out[index] = total;
  }
}

// One warp per run, striding along it (more threads per block only slow the emulated GPU).
__global__ void squared_run_sums_kernel(const float* x, float* out, int64_t n, int64_t run) {
  const int64_t begin = blockIdx.x * run, end = begin + run < n ? begin + run : n;
  float partial = 0.0f;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) partial += x[i] * x[i];
  const float total = block_sum(partial);
  if (threadIdx.x == 0) out[blockIdx.x] = total;
}

// One thread per output, walking its column in order with the CPU's comparison, so that
// ties and NaNs resolve as they do there.
__global__ void max_dim_kernel(const float* x, float* out, int32_t* argmax, int64_t outer, int64_t reduce,
                               int64_t inner) {
  MINIPIPE_GRID_STRIDE_LOOP(index, outer * inner) {
    const int64_t o = index / inner, i = index % inner;
    const float* column = x + o * reduce * inner + i;
    float best = column[0];
    int32_t best_index = 0;
    for (int64_t r = 1; r < reduce; ++r) {
      const float v = column[r * inner];
      if (v > best) {
        best = v;
        best_index = static_cast<int32_t>(r);
      }
    }
    out[index] = best;
    argmax[index] = best_index;
  }
}

// One thread per input element: a gather, so dx needs no zeroing pass and no atomics.
__global__ void max_dim_backward_kernel(const float* dy, const int32_t* argmax, float* dx, int64_t outer,
                                        int64_t reduce, int64_t inner) {
  MINIPIPE_GRID_STRIDE_LOOP(index, outer * reduce * inner) {
    const int64_t i = index % inner, r = (index / inner) % reduce, o = index / (inner * reduce);
    dx[index] = argmax[o * inner + i] == r ? dy[o * inner + i] : 0.0f;
  }
}

}  // namespace

void sum_dim(const float* x, float* out, int64_t outer, int64_t reduce, int64_t inner, cudaStream_t stream) {
  if (outer * inner == 0) return;
  if (inner == 1 && outer <= 2147483647) {
    sum_rows_kernel<<<static_cast<unsigned>(outer), kThreads, 0, stream>>>(x, out, reduce);
  } else {
    sum_columns_kernel<<<blocks_for(outer * inner), kThreads, 0, stream>>>(x, out, outer, reduce, inner);
  }
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void squared_run_sums(const float* x, float* out, int64_t n, int64_t run, cudaStream_t stream) {
  if (n == 0) return;
  squared_run_sums_kernel<<<static_cast<unsigned>((n + run - 1) / run), 32, 0, stream>>>(x, out, n, run);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void max_dim(const float* x, float* out, int32_t* argmax, int64_t outer, int64_t reduce, int64_t inner,
             cudaStream_t stream) {
  if (outer * inner == 0) return;
  max_dim_kernel<<<blocks_for(outer * inner), kThreads, 0, stream>>>(x, out, argmax, outer, reduce, inner);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void max_dim_backward(const float* dy, const int32_t* argmax, float* dx, int64_t outer, int64_t reduce,
                      int64_t inner, cudaStream_t stream) {
  if (outer * reduce * inner == 0) return;
  max_dim_backward_kernel<<<blocks_for(outer * reduce * inner), kThreads, 0, stream>>>(dy, argmax, dx, outer, reduce,
                                                                                      inner);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

}  // namespace minipipe::kernels::cuda
