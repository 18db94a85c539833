#pragma once
// The sliding window of a 2-D convolution or pooling, shared by the CPU and CUDA kernels.
#include <cstdint>

#include "kernels/host_device.h"

namespace minipipe::kernels {

struct Window2d {
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  MINIPIPE_HOST_DEVICE int64_t out_size_h(int64_t h) const { return (h + 2 * pad_h - kernel_h) / stride_h + 1; }
  MINIPIPE_HOST_DEVICE int64_t out_size_w(int64_t w) const { return (w + 2 * pad_w - kernel_w) / stride_w + 1; }
};

}  // namespace minipipe::kernels
