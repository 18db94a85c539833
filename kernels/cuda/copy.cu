#include "kernels/cuda/check.h"
#include "kernels/cuda/copy.h"
#include "kernels/cuda/launch.cuh"

namespace minipipe::kernels::cuda {

namespace {
constexpr int kMaxDims = 16;  // as kernels/cpu/elementwise.h

__global__ void fill32_kernel(uint32_t* dst, uint32_t bits, int64_t count) {
  MINIPIPE_GRID_STRIDE_LOOP(i, count) dst[i] = bits;
}

// Passed by value: the kernel reads shape and strides from its parameter space.
struct StridedLayout {
  int64_t shape[kMaxDims], src_strides[kMaxDims], dst_strides[kMaxDims];
  int dims;
};

__global__ void strided_copy32_kernel(const uint32_t* src, uint32_t* dst, StridedLayout layout, int64_t count) {
  MINIPIPE_GRID_STRIDE_LOOP(i, count) {
    int64_t rest = i, src_offset = 0, dst_offset = 0;
    for (int d = layout.dims - 1; d >= 0; --d) {  // the last dim varies fastest
      const int64_t coordinate = rest % layout.shape[d];
      rest /= layout.shape[d];
      src_offset += coordinate * layout.src_strides[d];
      dst_offset += coordinate * layout.dst_strides[d];
    }
    dst[dst_offset] = src[src_offset];
  }
}
}  // namespace

void fill32(void* dst, uint32_t bits, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  fill32_kernel<<<blocks_for(count), kThreads, 0, stream>>>(static_cast<uint32_t*>(dst), bits, count);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void strided_copy32(const void* src, const int64_t* src_strides, void* dst, const int64_t* dst_strides,
                    const int64_t* shape, int dims, cudaStream_t stream) {
  StridedLayout layout{};
  layout.dims = dims;
  int64_t count = 1;
  for (int d = 0; d < dims; ++d) {
    layout.shape[d] = shape[d];
    layout.src_strides[d] = src_strides[d];
    layout.dst_strides[d] = dst_strides[d];
    count *= shape[d];
  }
  if (count == 0) return;
  strided_copy32_kernel<<<blocks_for(count), kThreads, 0, stream>>>(static_cast<const uint32_t*>(src),
                                                                     static_cast<uint32_t*>(dst), layout, count);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

}  // namespace minipipe::kernels::cuda
