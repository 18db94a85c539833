#include "kernels/cuda/check.h"
#include "kernels/cuda/copy.h"
#include "kernels/cuda/launch.cuh"

namespace minipipe::kernels::cuda {

namespace {
__global__ void fill32_kernel(uint32_t* dst, uint32_t bits, int64_t count) {
  MINIPIPE_GRID_STRIDE_LOOP(i, count) dst[i] = bits;
}

// layout.first: source strides, layout.second: destination strides.
__global__ void strided_copy32_kernel(const uint32_t* src, uint32_t* dst, TwoStrideLayout layout) {
  MINIPIPE_GRID_STRIDE_LOOP(i, layout.count) {
    int64_t src_offset, dst_offset;
    layout.offsets(i, src_offset, dst_offset);
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
  const TwoStrideLayout layout(shape, src_strides, dst_strides, dims);
  if (layout.count == 0) return;
  if (layout.contiguous()) {  // a clone: the runtime's own device-to-device copy
    MINIPIPE_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(layout.count) * 4, cudaMemcpyDeviceToDevice,
                                        stream));
    return;
  }
  strided_copy32_kernel<<<blocks_for(layout.count), kThreads, 0, stream>>>(static_cast<const uint32_t*>(src),
                                                                            static_cast<uint32_t*>(dst), layout);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

}  // namespace minipipe::kernels::cuda
