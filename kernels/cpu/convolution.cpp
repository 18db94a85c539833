#include "kernels/cpu/convolution.h"

#include <cstring>
#include <limits>

namespace minipipe::kernels::cpu {

namespace {
// Calls row(offset of the output row in the columns, offset of the input row in the image or
// -1 where the row is padding, kx) for every output row of every patch entry; the caller
// then moves the out_w values of that row. Bounds are decided per row, not per element.
template <class Row>
void for_each_patch_row(int64_t channels, int64_t h, int64_t w, const Window2d& win, Row row) {
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w);
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t ky = 0; ky < win.kernel_h; ++ky)
      for (int64_t kx = 0; kx < win.kernel_w; ++kx) {
        const int64_t patch_row = (c * win.kernel_h + ky) * win.kernel_w + kx;
        for (int64_t y = 0; y < oh; ++y) {
          const int64_t iy = y * win.stride_h - win.pad_h + ky;
          row((patch_row * oh + y) * ow, iy >= 0 && iy < h ? (c * h + iy) * w : -1, kx);
        }
      }
}

// The output columns [first, last) whose input column x * stride - pad + kx is inside [0, w).
void inside_columns(int64_t kx, int64_t ow, int64_t w, const Window2d& win, int64_t& first, int64_t& last) {
  first = 0;
  while (first < ow && first * win.stride_w - win.pad_w + kx < 0) ++first;
  last = ow;
  while (last > first && (last - 1) * win.stride_w - win.pad_w + kx >= w) --last;
}
}  // namespace

void im2col(const float* image, float* columns, int64_t channels, int64_t h, int64_t w,
            const Window2d& window) {
  const int64_t ow = window.out_size_w(w);
  for_each_patch_row(channels, h, w, window, [&](int64_t out, int64_t in_row, int64_t kx) {
    float* dst = columns + out;
    if (in_row < 0) {
      for (int64_t x = 0; x < ow; ++x) dst[x] = 0.0f;
      return;
    }
    int64_t first, last;
    inside_columns(kx, ow, w, window, first, last);
    const float* src = image + in_row - window.pad_w + kx;
    for (int64_t x = 0; x < first; ++x) dst[x] = 0.0f;
    if (window.stride_w == 1) {
      for (int64_t x = first; x < last; ++x) dst[x] = src[x];
    } else {
      for (int64_t x = first; x < last; ++x) dst[x] = src[x * window.stride_w];
    }
    for (int64_t x = last; x < ow; ++x) dst[x] = 0.0f;
  });
}

void col2im_add(const float* columns, float* image, int64_t channels, int64_t h, int64_t w,
                const Window2d& window) {
  const int64_t ow = window.out_size_w(w);
  for_each_patch_row(channels, h, w, window, [&](int64_t out, int64_t in_row, int64_t kx) {
    if (in_row < 0) return;
    int64_t first, last;
    inside_columns(kx, ow, w, window, first, last);
    const float* src = columns + out;
    float* dst = image + in_row - window.pad_w + kx;
    if (window.stride_w == 1) {
      for (int64_t x = first; x < last; ++x) dst[x] += src[x];
    } else {
      for (int64_t x = first; x < last; ++x) dst[x * window.stride_w] += src[x];
    }
  });
}

void max_pool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h,
                        int64_t w, const Window2d& win) {
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w);
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane = x + p * h * w;
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        float best = -std::numeric_limits<float>::infinity();
        int32_t best_index = -1;
        for (int64_t ky = 0; ky < win.kernel_h; ++ky) {
          const int64_t iy = oy * win.stride_h - win.pad_h + ky;
          if (iy < 0 || iy >= h) continue;
          for (int64_t kx = 0; kx < win.kernel_w; ++kx) {
            const int64_t ix = ox * win.stride_w - win.pad_w + kx;
            if (ix < 0 || ix >= w) continue;
            if (best_index < 0 || plane[iy * w + ix] > best) {
              best = plane[iy * w + ix];
              best_index = static_cast<int32_t>(iy * w + ix);
            }
          }
        }
        const int64_t out = (p * oh + oy) * ow + ox;
        y[out] = best;
        argmax[out] = best_index;
      }
  }
}

void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes,
                         int64_t h, int64_t w, const Window2d& win) {
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w);
  std::memset(dx, 0, static_cast<size_t>(planes * h * w) * sizeof(float));
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < oh * ow; ++i)
      if (argmax[p * oh * ow + i] >= 0) dx[p * h * w + argmax[p * oh * ow + i]] += dy[p * oh * ow + i];
}

namespace {
template <class Visit>
void for_each_window_pixel(int64_t planes, int64_t h, int64_t w, const Window2d& win, Visit visit) {
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox)
        for (int64_t ky = 0; ky < win.kernel_h; ++ky) {
          const int64_t iy = oy * win.stride_h - win.pad_h + ky;
          if (iy < 0 || iy >= h) continue;
          for (int64_t kx = 0; kx < win.kernel_w; ++kx) {
            const int64_t ix = ox * win.stride_w - win.pad_w + kx;
            if (ix >= 0 && ix < w) visit((p * oh + oy) * ow + ox, (p * h + iy) * w + ix);
          }
        }
}
}  // namespace

void avg_pool2d_forward(const float* x, float* y, int64_t planes, int64_t h, int64_t w,
                        const Window2d& win) {
  const float inverse_area = 1.0f / static_cast<float>(win.kernel_h * win.kernel_w);
  std::memset(y, 0, static_cast<size_t>(planes * win.out_size_h(h) * win.out_size_w(w)) * sizeof(float));
  for_each_window_pixel(planes, h, w, win, [&](int64_t out, int64_t in) { y[out] += x[in] * inverse_area; });
}

void avg_pool2d_backward(const float* dy, float* dx, int64_t planes, int64_t h, int64_t w,
                         const Window2d& win) {
  const float inverse_area = 1.0f / static_cast<float>(win.kernel_h * win.kernel_w);
  std::memset(dx, 0, static_cast<size_t>(planes * h * w) * sizeof(float));
  for_each_window_pixel(planes, h, w, win, [&](int64_t out, int64_t in) { dx[in] += dy[out] * inverse_area; });
}

}  // namespace minipipe::kernels::cpu
