#pragma once
// 2-D convolution and pooling on NCHW tensors.
#include <cstdint>

#include "tensor/tensor.h"

namespace minipipe {

// A height/width pair; a single number means the same for both.
struct Size2 {
  int64_t h, w;
  Size2(int64_t both) : h(both), w(both) {}  // NOLINT: implicit on purpose
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
};

// x [N, C, H, W], weight [O, C, kh, kw], bias [O] or undefined -> [N, O, H', W'].
// Computed as im2col plus one GEMM per group of images.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride = 1, Size2 padding = 0);

// Padding counts as -inf for max and as 0 (in the divisor too) for average pooling.
Tensor max_pool2d(const Tensor& x, Size2 kernel, Size2 stride, Size2 padding = 0);
Tensor avg_pool2d(const Tensor& x, Size2 kernel, Size2 stride, Size2 padding = 0);

}  // namespace minipipe
