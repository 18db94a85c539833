#include "kernels/cpu/convolution.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/cpu/threads.h"

namespace minipipe::kernels::cpu {

namespace {
// Where patch entry (ky, kx) reads from, worked out once and shared by every channel: output
// row y reads input row y * stride_h - pad_h + ky, inside the image for y in [y_first, y_last);
// output column x reads input column x * stride_w - pad_w + kx, inside for x in [x_first, x_last).
// Everything else in the patch row is padding.
struct PatchEntry {
  int64_t ky, kx, y_first, y_last, x_first, x_last;
};

// The first i >= 0 with i * stride + offset >= bound, at most `count`.
int64_t first_reaching(int64_t bound, int64_t offset, int64_t stride, int64_t count) {
  const int64_t distance = bound - offset;
  return distance <= 0 ? 0 : std::min(count, (distance + stride - 1) / stride);
}

// Calls entry(e, c, patch_row) for every channel c of every patch entry (ky, kx), the rows of
// columns [channels * kh * kw, out_h * out_w] in order.
template <class Entry>
void for_each_patch_entry(int64_t channels, int64_t h, int64_t w, const Window2d& win, Entry entry) {
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w);
  for (int64_t ky = 0; ky < win.kernel_h; ++ky)
    for (int64_t kx = 0; kx < win.kernel_w; ++kx) {
      PatchEntry e{ky, kx, 0, 0, 0, 0};
      e.y_first = first_reaching(0, ky - win.pad_h, win.stride_h, oh);
      e.y_last = std::max(e.y_first, first_reaching(h, ky - win.pad_h, win.stride_h, oh));
      e.x_first = first_reaching(0, kx - win.pad_w, win.stride_w, ow);
      e.x_last = std::max(e.x_first, first_reaching(w, kx - win.pad_w, win.stride_w, ow));
      for (int64_t c = 0; c < channels; ++c) entry(e, c, (c * win.kernel_h + ky) * win.kernel_w + kx);
    }
}

// Zeroes the padding of one patch row [oh, ow]: whole rows outside [y_first, y_last), then the
// columns outside [x_first, x_last) of the other rows, column by column so that the compiler
// does not turn one- or two-float runs into memset calls.
inline void zero_padding(float* row_major, const PatchEntry& e, int64_t oh, int64_t ow) {
  if (e.y_first > 0) std::fill(row_major, row_major + e.y_first * ow, 0.0f);
  if (e.y_last < oh) std::fill(row_major + e.y_last * ow, row_major + oh * ow, 0.0f);
  for (int64_t x = 0; x < e.x_first; ++x)
    for (int64_t y = e.y_first; y < e.y_last; ++y) row_major[y * ow + x] = 0.0f;
  for (int64_t x = e.x_last; x < ow; ++x)
    for (int64_t y = e.y_first; y < e.y_last; ++y) row_major[y * ow + x] = 0.0f;
}

// Stride 1 with out_w == w (kernel_w == 2 * pad_w + 1, the usual 3x3/pad 1 case): output pixel
// i = y * w + x reads input pixel i + shift for one constant shift, so the inside of a patch
// row is a single contiguous run of the image plane (plus a few wrapped columns, which are
// padding). Small images then cost one copy per patch row instead of one per 8-pixel row.
bool is_shifted_plane(int64_t w, const Window2d& win) {
  return win.stride_h == 1 && win.stride_w == 1 && win.out_size_w(w) == w;
}

// The contiguous run for a shifted-plane entry: pixels [begin, end) and their shift.
struct ShiftedRun {
  int64_t begin, end, shift;
  ShiftedRun(const PatchEntry& e, int64_t h, int64_t w, const Window2d& win)
      : shift((e.ky - win.pad_h) * w + (e.kx - win.pad_w)) {
    begin = std::max(e.y_first * w, -shift);
    end = std::max(begin, std::min(e.y_last * w, h * w - shift));
  }
};
}  // namespace

void im2col(const float* image, float* columns, int64_t columns_stride, int64_t channels, int64_t h,
            int64_t w, const Window2d& win) {
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w);
  const bool shifted = is_shifted_plane(w, win);
  for_each_patch_entry(channels, h, w, win, [&](const PatchEntry& e, int64_t c, int64_t patch_row) {
    float* __restrict dst = columns + patch_row * columns_stride;
    const float* __restrict plane = image + c * h * w;
    if (shifted) {  // the wrapped columns this copies are zeroed with the padding below
      const ShiftedRun run(e, h, w, win);
      std::copy(plane + run.begin + run.shift, plane + run.end + run.shift, dst + run.begin);
    } else {
      for (int64_t y = e.y_first; y < e.y_last; ++y) {
        const float* __restrict src = plane + (y * win.stride_h - win.pad_h + e.ky) * w;
        for (int64_t x = e.x_first; x < e.x_last; ++x)
          dst[y * ow + x] = src[x * win.stride_w - win.pad_w + e.kx];
      }
    }
    zero_padding(dst, e, oh, ow);
  });
}

void col2im_add(float* columns, int64_t columns_stride, float* image, int64_t channels, int64_t h,
                int64_t w, const Window2d& win) {
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w);
  const bool shifted = is_shifted_plane(w, win);
  for_each_patch_entry(channels, h, w, win, [&](const PatchEntry& e, int64_t c, int64_t patch_row) {
    float* __restrict src = columns + patch_row * columns_stride;
    float* __restrict plane = image + c * h * w;
    if (shifted) {  // zero the wrapped columns (padding) so that the run adds back in one go
      zero_padding(src, e, oh, ow);
      const ShiftedRun run(e, h, w, win);
      for (int64_t i = run.begin; i < run.end; ++i) plane[i + run.shift] += src[i];
    } else {
      for (int64_t y = e.y_first; y < e.y_last; ++y) {
        float* __restrict dst = plane + (y * win.stride_h - win.pad_h + e.ky) * w;
        for (int64_t x = e.x_first; x < e.x_last; ++x)
          dst[x * win.stride_w - win.pad_w + e.kx] += src[y * ow + x];
      }
    }
  });
}

void max_pool2d_forward(const float* x, float* y, int32_t* argmax, int64_t planes, int64_t h,
                        int64_t w, const Window2d& win) {
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w);
  parallel_for(planes, h * w + 2 * oh * ow, [&](int64_t p) {  // planes are independent
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
  });
}

void max_pool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t planes,
                         int64_t h, int64_t w, const Window2d& win) {
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w);
  parallel_for(planes, h * w + 2 * oh * ow, [&](int64_t p) {
    std::fill(dx + p * h * w, dx + (p + 1) * h * w, 0.0f);
    for (int64_t i = 0; i < oh * ow; ++i)
      if (argmax[p * oh * ow + i] >= 0) dx[p * h * w + argmax[p * oh * ow + i]] += dy[p * oh * ow + i];
  });
}

namespace {
// Planes are independent: the kernel threads take ranges of them.
template <class Visit>
void for_each_window_pixel(int64_t planes, int64_t h, int64_t w, const Window2d& win, Visit visit) {
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w);
  parallel_for(planes, h * w + oh * ow * win.kernel_h * win.kernel_w, [&](int64_t p) {
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
  });
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
