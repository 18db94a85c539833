#include "kernels/cuda/check.h"
#include "kernels/cuda/copy.h"

namespace minipipe::kernels::cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kMaxDims = 16;  // as kernels/cpu/elementwise.h

// Enough blocks to cover `count` with a grid-stride loop, capped where more would only queue.
unsigned blocks_for(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

__global__ void fill32_kernel(uint32_t* dst, uint32_t bits, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = bits;
}

// Passed by value: the kernel reads shape and strides from its parameter space.
struct StridedLayout {
  int64_t shape[kMaxDims], src_strides[kMaxDims], dst_strides[kMaxDims];
  int dims;
};

__global__ void strided_copy32_kernel(const uint32_t* src, uint32_t* dst, StridedLayout layout, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
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
