#pragma once
// Convolution by im2col + GEMM, and 2-D pooling, on NCHW float arrays.
#include <cstdint>

#include "kernels/window2d.h"

namespace minipipe::kernels::cpu {

using kernels::Window2d;

// One image [channels, h, w] -> columns [channels * kh * kw, out_h * out_w]; padding reads 0.
// Consecutive column rows are columns_stride apart (>= out_h * out_w), so that several images'
// columns can sit side by side and share one GEMM.
void im2col(const float* image, float* columns, int64_t columns_stride, int64_t channels, int64_t h,
            int64_t w, const Window2d& window);
// The adjoint of im2col: adds each column entry back into its image position. `columns` is
// scratch: entries that fall on padding may be overwritten (with zeros).
void col2im_add(float* columns, int64_t columns_stride, float* image, int64_t channels, int64_t h,
                int64_t w, const Window2d& window);

// planes = batch * channels images of [h, w]. argmax stores the flat h*w index chosen.
void max_pool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h,
                        int64_t w, const Window2d& window);
void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes,
                         int64_t h, int64_t w, const Window2d& window);
// Average over the window counting padded positions (PyTorch's count_include_pad=True).
void avg_pool2d_forward(const float* x, float* y, int64_t planes, int64_t h, int64_t w,
                        const Window2d& window);
void avg_pool2d_backward(const float* dy, float* dx, int64_t planes, int64_t h, int64_t w,
                         const Window2d& window);

}  // namespace minipipe::kernels::cpu
