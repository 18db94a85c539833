#pragma once
// Fills and strided copies of 32-bit elements in device memory, on a stream: what tensor/
// needs to move data on a GPU. CPU references: kernels/cpu/elementwise.h (fill32,
// strided_copy32).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace minipipe::kernels::cuda {

void fill32(void* dst, uint32_t bits, int64_t count, cudaStream_t stream);
// dst[index . dst_strides] = src[index . src_strides] for every index of `shape` (dims <= 16).
void strided_copy32(const void* src, const int64_t* src_strides, void* dst, const int64_t* dst_strides,
                    const int64_t* shape, int dims, cudaStream_t stream);

}  // namespace minipipe::kernels::cuda
