#pragma once
// Convolution's im2col/col2im and 2-D pooling on device NCHW arrays, on a stream. Same
// meaning as the CPU references in kernels/cpu/convolution.h, except that im2col and col2im
// take a run of `count` images at once: image j's columns sit at column offset j * pixels of
// columns [channels * kh * kw, count * pixels] (pixels = out_h * out_w), the layout the CPU
// builds by calling its im2col once per image with columns_stride = count * pixels.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/window2d.h"

namespace minipipe::kernels::cuda {

void im2col(const float* images, int64_t count, float* columns, int64_t channels, int64_t h, int64_t w,
            const Window2d& window, cudaStream_t stream);
// images += the adjoint of im2col applied to columns.
void col2im_add(const float* columns, int64_t count, float* images, int64_t channels, int64_t h, int64_t w,
                const Window2d& window, cudaStream_t stream);

void max_pool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h, int64_t w,
                        const Window2d& window, cudaStream_t stream);
void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes, int64_t h, int64_t w,
                         const Window2d& window, cudaStream_t stream);
void avg_pool2d_forward(const float* x, float* y, int64_t planes, int64_t h, int64_t w, const Window2d& window,
                        cudaStream_t stream);
void avg_pool2d_backward(const float* dy, float* dx, int64_t planes, int64_t h, int64_t w, const Window2d& window,
                         cudaStream_t stream);

}  // namespace minipipe::kernels::cuda
