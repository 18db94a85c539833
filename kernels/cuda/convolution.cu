// Forward kernels: one thread per output element, reading its window. Backward kernels: one
// thread per input element, gathering from the windows that contain it, so that nothing is
// added by two threads (no atomics, and the same sums on every run).
#include "kernels/cuda/check.h"
#include "kernels/cuda/convolution.h"
#include "kernels/cuda/launch.cuh"

namespace minipipe::kernels::cuda {

namespace {

// Calls visit(output_y, output_x, ky, kx) for every window position (output pixel) whose
// window covers input pixel (y, x), that is y = output_y * stride_h - pad_h + ky.
template <class Visit>
__device__ void for_each_window_covering(int64_t y, int64_t x, int64_t out_h, int64_t out_w, const Window2d& win,
                                         Visit visit) {
  for (int64_t ky = 0; ky < win.kernel_h; ++ky) {
    const int64_t shifted_y = y + win.pad_h - ky;
    if (shifted_y < 0 || shifted_y % win.stride_h != 0 || shifted_y / win.stride_h >= out_h) continue;
    for (int64_t kx = 0; kx < win.kernel_w; ++kx) {
      const int64_t shifted_x = x + win.pad_w - kx;
      if (shifted_x < 0 || shifted_x % win.stride_w != 0 || shifted_x / win.stride_w >= out_w) continue;
      visit(shifted_y / win.stride_h, shifted_x / win.stride_w, ky, kx);
    }
  }
}

// Calls visit(y, x) for every input pixel in the window of output pixel (oy, ox), in the
// CPU's order (rows, then columns), skipping padding.
template <class Visit>
__device__ void for_each_pixel_in_window(int64_t oy, int64_t ox, int64_t h, int64_t w, const Window2d& win,
                                         Visit visit) {
  for (int64_t ky = 0; ky < win.kernel_h; ++ky) {
    const int64_t y = oy * win.stride_h - win.pad_h + ky;
    if (y < 0 || y >= h) continue;
    for (int64_t kx = 0; kx < win.kernel_w; ++kx) {
      const int64_t x = ox * win.stride_w - win.pad_w + kx;
      if (x >= 0 && x < w) visit(y, x);
    }
  }
}

// columns[(c, ky, kx), (j, oy, ox)] = image j [c, oy * stride_h - pad_h + ky, ox * stride_w - pad_w + kx].
__global__ void im2col_kernel(const float* images, int64_t count, float* columns, int64_t channels, int64_t h,
                              int64_t w, Window2d win) {
  const int64_t out_h = win.out_size_h(h), out_w = win.out_size_w(w), pixels = out_h * out_w;
  const int64_t width = count * pixels, area = win.kernel_h * win.kernel_w;
  MINIPIPE_GRID_STRIDE_LOOP(index, channels * area * width) {
    const int64_t row = index / width, column = index % width;
    const int64_t c = row / area, ky = (row % area) / win.kernel_w, kx = row % win.kernel_w;
    const int64_t j = column / pixels, oy = (column % pixels) / out_w, ox = column % out_w;
    const int64_t y = oy * win.stride_h - win.pad_h + ky, x = ox * win.stride_w - win.pad_w + kx;
    columns[index] = y >= 0 && y < h && x >= 0 && x < w ? images[((j * channels + c) * h + y) * w + x] : 0.0f;
  }
}

__global__ void col2im_add_kernel(const float* columns, int64_t count, float* images, int64_t channels, int64_t h,
                                  int64_t w, Window2d win) {
  const int64_t out_h = win.out_size_h(h), out_w = win.out_size_w(w), pixels = out_h * out_w;
  const int64_t width = count * pixels;
  MINIPIPE_GRID_STRIDE_LOOP(index, count * channels * h * w) {
    const int64_t x = index % w, y = (index / w) % h, c = (index / (h * w)) % channels, j = index / (channels * h * w);
    float total = 0.0f;
    for_each_window_covering(y, x, out_h, out_w, win, [&](int64_t oy, int64_t ox, int64_t ky, int64_t kx) {
      const int64_t row = (c * win.kernel_h + ky) * win.kernel_w + kx;
      total += columns[row * width + j * pixels + oy * out_w + ox];
    });
    images[index] += total;
  }
}

// The first maximum in window order, skipping padding; argmax is the flat y * w + x index.
__global__ void max_pool2d_forward_kernel(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h,
                                          int64_t w, Window2d win) {
  const int64_t out_h = win.out_size_h(h), out_w = win.out_size_w(w);
  MINIPIPE_GRID_STRIDE_LOOP(index, planes * out_h * out_w) {
    const int64_t ox = index % out_w, oy = (index / out_w) % out_h, p = index / (out_h * out_w);
    const float* plane = x + p * h * w;
    float best = -INFINITY;
    int32_t best_index = -1;
    for_each_pixel_in_window(oy, ox, h, w, win, [&](int64_t iy, int64_t ix) {
      if (best_index < 0 || plane[iy * w + ix] > best) {
        best = plane[iy * w + ix];
        best_index = static_cast<int32_t>(iy * w + ix);
      }
    });
    y[index] = best;
    argmax[index] = best_index;
  }
}

__global__ void max_pool2d_backward_kernel(const float* dy, const int32_t* argmax, float* dx, int64_t planes,
                                           int64_t h, int64_t w, Window2d win) {
  const int64_t out_h = win.out_size_h(h), out_w = win.out_size_w(w);
  MINIPIPE_GRID_STRIDE_LOOP(index, planes * h * w) {
    const int64_t x = index % w, y = (index / w) % h, p = index / (h * w);
    const int64_t plane_out = p * out_h * out_w;
    float total = 0.0f;
    for_each_window_covering(y, x, out_h, out_w, win, [&](int64_t oy, int64_t ox, int64_t, int64_t) {
      const int64_t out = plane_out + oy * out_w + ox;
      if (argmax[out] == y * w + x) total += dy[out];
    });
    dx[index] = total;
  }
}

// Padded positions count in the window's area (count_include_pad), as on the CPU.
__global__ void avg_pool2d_forward_kernel(const float* x, float* y, int64_t planes, int64_t h, int64_t w,
                                          Window2d win) {
  const int64_t out_h = win.out_size_h(h), out_w = win.out_size_w(w);
  const float inverse_area = 1.0f / static_cast<float>(win.kernel_h * win.kernel_w);
  MINIPIPE_GRID_STRIDE_LOOP(index, planes * out_h * out_w) {
    const int64_t ox = index % out_w, oy = (index / out_w) % out_h, p = index / (out_h * out_w);
    const float* plane = x + p * h * w;
    float total = 0.0f;
    for_each_pixel_in_window(oy, ox, h, w, win,
                             [&](int64_t iy, int64_t ix) { total += plane[iy * w + ix] * inverse_area; });
    y[index] = total;
  }
}

__global__ void avg_pool2d_backward_kernel(const float* dy, float* dx, int64_t planes, int64_t h, int64_t w,
                                           Window2d win) {
  const int64_t out_h = win.out_size_h(h), out_w = win.out_size_w(w);
  const float inverse_area = 1.0f / static_cast<float>(win.kernel_h * win.kernel_w);
  MINIPIPE_GRID_STRIDE_LOOP(index, planes * h * w) {
    const int64_t x = index % w, y = (index / w) % h, p = index / (h * w);
    const float* plane_dy = dy + p * out_h * out_w;
    float total = 0.0f;
    for_each_window_covering(y, x, out_h, out_w, win, [&](int64_t oy, int64_t ox, int64_t, int64_t) {
      total += plane_dy[oy * out_w + ox] * inverse_area;
    });
    dx[index] = total;
  }
}

}  // namespace

// Every kernel here covers `count` elements with a grid-stride loop.
#define MINIPIPE_ELEMENT_LAUNCH(kernel, count, stream, ...)                       \
  do {                                                                            \
    if ((count) == 0) return;                                                     \
    kernel<<<blocks_for(count), kThreads, 0, (stream)>>>(__VA_ARGS__);            \
    MINIPIPE_CUDA_CHECK_LAUNCH();                                                 \
  } while (0)

void im2col(const float* images, int64_t count, float* columns, int64_t channels, int64_t h, int64_t w,
            const Window2d& window, cudaStream_t stream) {
  const int64_t elements = channels * window.kernel_h * window.kernel_w * count * window.out_size_h(h) *
                           window.out_size_w(w);
  MINIPIPE_ELEMENT_LAUNCH(im2col_kernel, elements, stream, images, count, columns, channels, h, w, window);
}

void col2im_add(const float* columns, int64_t count, float* images, int64_t channels, int64_t h, int64_t w,
                const Window2d& window, cudaStream_t stream) {
  MINIPIPE_ELEMENT_LAUNCH(col2im_add_kernel, count * channels * h * w, stream, columns, count, images, channels, h, w,
                          window);
}

void max_pool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h, int64_t w,
                        const Window2d& window, cudaStream_t stream) {
  MINIPIPE_ELEMENT_LAUNCH(max_pool2d_forward_kernel, planes * window.out_size_h(h) * window.out_size_w(w), stream, x,
                          y, argmax, planes, h, w, window);
}

void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes, int64_t h, int64_t w,
                         const Window2d& window, cudaStream_t stream) {
  MINIPIPE_ELEMENT_LAUNCH(max_pool2d_backward_kernel, planes * h * w, stream, dy, argmax, dx, planes, h, w, window);
}

void avg_pool2d_forward(const float* x, float* y, int64_t planes, int64_t h, int64_t w, const Window2d& window,
                        cudaStream_t stream) {
  MINIPIPE_ELEMENT_LAUNCH(avg_pool2d_forward_kernel, planes * window.out_size_h(h) * window.out_size_w(w), stream, x,
                          y, planes, h, w, window);
}

void avg_pool2d_backward(const float* dy, float* dx, int64_t planes, int64_t h, int64_t w, const Window2d& window,
                         cudaStream_t stream) {
  MINIPIPE_ELEMENT_LAUNCH(avg_pool2d_backward_kernel, planes * h * w, stream, dy, dx, planes, h, w, window);
}

}  // namespace minipipe::kernels::cuda
