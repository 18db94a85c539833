#include "autograd/convolution.h"

#include <algorithm>
#include <stdexcept>

#include "autograd/node.h"
#include "autograd/op_support.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/threads.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe {

namespace {

using kernels::Window2d;

Window2d make_window(const char* op, const Tensor& x, Size2 kernel, Size2 stride, Size2 padding) {
  if (x.dim() != 4) throw std::invalid_argument(std::string(op) + ": input must be [N, C, H, W], got " + shape_str(x.shape()));
  const Window2d w{kernel.h, kernel.w, stride.h, stride.w, padding.h, padding.w};
  const int64_t h = x.shape()[2], width = x.shape()[3];
  if (w.kernel_h < 1 || w.kernel_w < 1 || w.stride_h < 1 || w.stride_w < 1 || w.pad_h < 0 || w.pad_w < 0)
    throw std::invalid_argument(std::string(op) + ": kernel and stride must be >= 1 and padding >= 0");
  if (h + 2 * w.pad_h < w.kernel_h || width + 2 * w.pad_w < w.kernel_w)
    throw std::invalid_argument(std::string(op) + ": kernel " + std::to_string(w.kernel_h) + "x" + std::to_string(w.kernel_w) +
                                " does not fit input " + shape_str(x.shape()) + " with padding " +
                                std::to_string(w.pad_h) + "x" + std::to_string(w.pad_w));
  return w;
}

// Per-image GEMMs are tiny for small images ([16, 144] x [144, 64] on 8x8 digits) and then cost
// more in packing than in arithmetic. So images go through the GEMM in groups, their columns
// side by side ([patch, count * pixels]), as wide as 256 pixels where the columns still fit in
// a 256 KiB slice of L2 cache. Outputs come back as [O, count * pixels] and are scattered to NCHW.
struct ImageGroups {
  struct Group {
    int64_t index, first, count;  // images [first, first + count)
  };
  int64_t n, patch, pixels, size, count;
  ImageGroups(int64_t images, int64_t patch_, int64_t pixels_) : n(images), patch(patch_), pixels(pixels_) {
    const int64_t wide_enough = (256 + pixels - 1) / pixels, fits_cache = (64 * 1024) / (patch * pixels);
    size = std::clamp<int64_t>(std::min(wide_enough, fits_cache), 1, images);
    count = (n + size - 1) / size;
  }
  // Calls body(group, columns, outputs) for the groups [begin, end), with two scratch buffers
  // of the calling thread: columns [patch, size * pixels] and outputs [gemm_rows, size * pixels].
  // With several kernel threads the groups run side by side, each thread with its own buffers
  // and its own groups' data in its cache, unless there are fewer groups than threads and
  // their GEMMs are large enough for gemm to split (kernels/cpu/gemm.h): then one after
  // another, each GEMM split. Either way every group is computed as on one thread.
  template <class Body>
  void run(int64_t begin, int64_t end, int64_t gemm_rows, Body body) const {
    const int64_t width = size * pixels;
    const auto groups_in = [&](int64_t first_group, int64_t end_group) {
      Tensor columns = empty({patch * width}), outputs = empty({gemm_rows * width});
      for (int64_t g = first_group; g < end_group; ++g)
        body(Group{g, g * size, std::min(size, n - g * size)}, columns.data<float>(), outputs.data<float>());
    };
    const bool gemm_splits = gemm_rows * width * patch >= kernels::cpu::kParallelMultiplyAdds;
    if (gemm_splits && end - begin < kernels::cpu::kernel_threads()) return groups_in(begin, end);
    kernels::cpu::parallel_ranges(end - begin, (patch + gemm_rows) * width,
                                  [&](int64_t first, int64_t last) { groups_in(begin + first, begin + last); });
  }
  // grouped [channels, count * pixels] -> images first.. of nchw [n, channels, pixels], and back.
  void scatter(const float* grouped, float* nchw, Group group, int64_t channels) const {
    for (int64_t j = 0; j < group.count; ++j)
      for (int64_t c = 0; c < channels; ++c)
        std::copy_n(grouped + (c * group.count + j) * pixels, pixels,
                    nchw + ((group.first + j) * channels + c) * pixels);
  }
  void gather(const float* nchw, float* grouped, Group group, int64_t channels) const {
    for (int64_t j = 0; j < group.count; ++j)
      for (int64_t c = 0; c < channels; ++c)
        std::copy_n(nchw + ((group.first + j) * channels + c) * pixels, pixels,
                    grouped + (c * group.count + j) * pixels);
  }
};

// The sizes of one convolution: input [n, channels, h, w], weight [out_channels, patch].
struct ConvShape {
  int64_t n, channels, h, w, out_channels;
  Window2d win;
  int64_t patch() const { return channels * win.kernel_h * win.kernel_w; }
  int64_t pixels() const { return win.out_size_h(h) * win.out_size_w(w); }
  const float* image(const float* x, int64_t i) const { return x + i * channels * h * w; }
  float* image(float* x, int64_t i) const { return x + i * channels * h * w; }
  // im2col of images [first, first + count) side by side into columns [patch, count * pixels].
  void im2col(const Device& device, const float* x, int64_t first, int64_t count, float* columns) const {
    kernels::im2col(device, image(x, first), count, columns, channels, h, w, win);
  }
};

// y = conv(x, weight): per group of images, im2col, one GEMM, scatter back to NCHW.
void convolve(const ConvShape& s, const float* x, const float* weight, float* y) {
  const ImageGroups groups(s.n, s.patch(), s.pixels());
  groups.run(0, groups.count, s.out_channels, [&](ImageGroups::Group group, float* columns, float* grouped_y) {
    const int64_t width = group.count * groups.pixels;
    s.im2col(Device::cpu(), x, group.first, group.count, columns);
    kernels::cpu::gemm(false, false, s.out_channels, width, groups.patch, 1.0f, weight, groups.patch, columns, width,
                       0.0f, grouped_y, width);
    groups.scatter(grouped_y, y, group, s.out_channels);
  });
}

// dW is a sum over the image groups' products, which must not depend on how the groups are
// spread over threads. So the groups go in rounds: the round's first group adds its product
// straight into dW (the GEMM's beta = 1), the others, side by side, write theirs to buffers of
// their own, and after the round these are added to dW in group order. The round's length,
// and with it the order of every addition, follows from the shapes alone: as many groups as
// this many floats of buffers hold.
constexpr int64_t kPartialProductFloats = int64_t{1} << 20;

// dW += dY columns(x)^T, with the columns recomputed rather than kept from the forward pass
// (they are kernel_h * kernel_w times the size of the input). With dx_by_col2im, also
// dX += col2im(W^T dY), which works for any stride; each group's dY is gathered once for both.
void add_gradients(const ConvShape& s, const float* x, const float* weight, const float* dy, float* dw,
                   float* dx_by_col2im) {
  const int64_t patch = s.patch(), pixels = s.pixels(), dw_size = s.out_channels * patch;
  const ImageGroups groups(s.n, patch, pixels);
  const int64_t round = std::clamp<int64_t>(kPartialProductFloats / dw_size, 1, groups.count);
  Tensor partials = empty({(round - 1) * dw_size});
  const auto partial = [&](int64_t i) { return partials.data<float>() + i * dw_size; };  // i = 0.. for the 2nd.. group
  for (int64_t begin = 0; begin < groups.count; begin += round) {
    const int64_t end = std::min(groups.count, begin + round);
    groups.run(begin, end, s.out_channels, [&](ImageGroups::Group group, float* columns, float* grouped_dy) {
      const int64_t width = group.count * pixels;
      groups.gather(dy, grouped_dy, group, s.out_channels);
      s.im2col(Device::cpu(), x, group.first, group.count, columns);
      const bool first_of_round = group.index == begin;
      kernels::cpu::gemm(false, true, s.out_channels, patch, width, 1.0f, grouped_dy, width, columns, width,
                         first_of_round ? 1.0f : 0.0f, first_of_round ? dw : partial(group.index - begin - 1), patch);
      if (!dx_by_col2im) return;
      kernels::cpu::gemm(true, false, patch, width, s.out_channels, 1.0f, weight, patch, grouped_dy, width, 0.0f,
                         columns, width);
      kernels::col2im_add(Device::cpu(), columns, group.count, s.image(dx_by_col2im, group.first), s.channels, s.h,
                          s.w, s.win);
    });
    kernels::cpu::parallel_ranges(dw_size, end - begin, [&](int64_t first, int64_t last) {
      for (int64_t g = begin + 1; g < end; ++g) {
        const float* product = partial(g - begin - 1);
        for (int64_t i = first; i < last; ++i) dw[i] += product[i];
      }
    });
  }
}

// On a GPU: im2col of a group of images at once (one kernel), one cuBLAS GEMM, and a strided
// copy between the GEMM's [O, count, pixels] and NCHW [count, O, pixels]. Groups are as large
// as 2^26 column floats (256 MiB) allow: GPU GEMMs want to be wide.
constexpr int64_t kGpuColumnFloats = int64_t{1} << 26;

// [count, O, oh, ow] images first.. of an NCHW tensor, seen as the GEMM's [O, count, pixels].
Tensor as_grouped(const Tensor& nchw, int64_t first, int64_t count) {
  return nchw.narrow(0, first, count).reshape({count, nchw.shape()[1], -1}).permute({1, 0, 2});
}

// Calls group(first, count, columns, outputs) for each run of images of x, with columns
// [patch, count * pixels] holding their im2col and outputs an [O, count * pixels] buffer.
// Both buffers are made once, for the largest group.
template <class Group>
void for_each_image_group_on_gpu(const ConvShape& s, const Tensor& x, Group group) {
  const int64_t patch = s.patch(), pixels = s.pixels();
  const int64_t size = std::clamp<int64_t>(kGpuColumnFloats / std::max<int64_t>(1, patch * pixels), 1, s.n);
  const Tensor columns = empty({patch * size * pixels}, DType::Float32, x.device());
  const Tensor outputs = empty({s.out_channels * size * pixels}, DType::Float32, x.device());
  for (int64_t first = 0; first < s.n; first += size) {
    const int64_t count = std::min(size, s.n - first), width = count * pixels;
    kernels::im2col(x.device(), s.image(x.data<float>(), first), count, columns.data<float>(), s.channels, s.h, s.w,
                    s.win);
    group(first, count, columns.narrow(0, 0, patch * width).view({patch, width}),
          outputs.narrow(0, 0, s.out_channels * width).view({s.out_channels, width}));
  }
}

// out = conv(x, weight) (+ bias, when defined), all on one GPU.
void convolve_on_gpu(const ConvShape& s, const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) {
  const int64_t patch = s.patch(), pixels = s.pixels();
  for_each_image_group_on_gpu(s, x, [&](int64_t first, int64_t count, const Tensor& columns, const Tensor& grouped_y) {
    const int64_t width = count * pixels;
    if (bias.defined()) copy_(grouped_y, bias.view({s.out_channels, 1}).expand({s.out_channels, width}));
    kernels::gemm(x.device(), false, false, s.out_channels, width, patch, 1.0f, weight.data<float>(), patch,
                  columns.data<float>(), width, bias.defined() ? 1.0f : 0.0f, grouped_y.data<float>(), width);
    copy_(as_grouped(out, first, count), grouped_y.view({s.out_channels, count, pixels}));
  });
}

// dW += dY columns(x)^T and, with dx defined, dX += col2im(W^T dY), all on one GPU.
void add_gradients_on_gpu(const ConvShape& s, const Tensor& x, const Tensor& weight, const Tensor& dy, Tensor& dw,
                          Tensor& dx) {
  const int64_t patch = s.patch(), pixels = s.pixels();
  for_each_image_group_on_gpu(s, x, [&](int64_t first, int64_t count, const Tensor& columns, const Tensor& grouped_dy) {
    const int64_t width = count * pixels;
    copy_(grouped_dy.view({s.out_channels, count, pixels}), as_grouped(dy, first, count));
    kernels::gemm(x.device(), false, true, s.out_channels, patch, width, 1.0f, grouped_dy.data<float>(), width,
                  columns.data<float>(), width, 1.0f, dw.data<float>(), patch);
    if (!dx.defined()) return;
    kernels::gemm(x.device(), true, false, patch, width, s.out_channels, 1.0f, weight.data<float>(), patch,
                  grouped_dy.data<float>(), width, 0.0f, columns.data<float>(), width);
    kernels::col2im_add(x.device(), columns.data<float>(), count, s.image(dx.data<float>(), first), s.channels, s.h,
                        s.w, s.win);
  });
}

// weight [O, C, kh, kw] -> [C, O, kh, kw] with each kernel rotated by 180 degrees.
Tensor flip_and_transpose(const Tensor& weight) {
  const int64_t o_size = weight.shape()[0], c_size = weight.shape()[1], area = weight.shape()[2] * weight.shape()[3];
  Tensor flipped = empty({c_size, o_size, weight.shape()[2], weight.shape()[3]});
  const float* w = weight.data<float>();
  float* f = flipped.data<float>();
  for (int64_t o = 0; o < o_size; ++o)
    for (int64_t c = 0; c < c_size; ++c)
      for (int64_t k = 0; k < area; ++k) f[(c * o_size + o) * area + k] = w[(o * c_size + c) * area + area - 1 - k];
  return flipped;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride, Size2 padding) {
  detail::check_float_input("conv2d", "x", x);
  detail::check_float_input("conv2d", "weight", weight);
  check_same_device("conv2d", x, weight);
  if (weight.dim() != 4 || x.dim() != 4 || weight.shape()[1] != x.shape()[1])
    throw std::invalid_argument("conv2d: input " + shape_str(x.shape()) + " and weight " + shape_str(weight.shape()) +
                                " do not fit: need [N, C, H, W] and [O, C, kh, kw] with the same C");
  const int64_t n = x.shape()[0], channels = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const int64_t out_channels = weight.shape()[0];
  if (bias.defined()) {
    detail::check_float_input("conv2d", "bias", bias);
    check_same_device("conv2d", x, bias);
    if (bias.shape() != Shape{out_channels})
      throw std::invalid_argument("conv2d: bias must be [" + std::to_string(out_channels) + "], got " + shape_str(bias.shape()));
  }
  const Window2d win = make_window("conv2d", x, {weight.shape()[2], weight.shape()[3]}, stride, padding);
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w), pixels = oh * ow;

  const Tensor input = x.contiguous(), wt = weight.contiguous();
  Tensor out = empty({n, out_channels, oh, ow}, DType::Float32, x.device());
  const ConvShape forward{n, channels, h, w, out_channels, win};
  const Tensor b = bias.defined() ? bias.contiguous().detach() : Tensor();
  if (x.device().is_cuda()) {
    convolve_on_gpu(forward, input, wt, b, out);
  } else {
    convolve(forward, input.data<float>(), wt.data<float>(), out.data<float>());
    if (b.defined()) {
      float* y = out.data<float>();
      kernels::cpu::parallel_for(n * out_channels, pixels, [&](int64_t plane) {
        const float bias_i = b.data<float>()[plane % out_channels];
        for (int64_t p = 0; p < pixels; ++p) y[plane * pixels + p] += bias_i;
      });
    }
  }
  if (!any_requires_grad({x, weight, bias})) return out;
  const Tensor saved_x = input.detach(), saved_w = wt.detach();
  const bool need_x = x.requires_grad(), has_bias = bias.defined();
  // On the CPU with stride 1, dX is a convolution of its own, apart from dW (below), so a
  // zero-bubble split (autograd/engine.h) computes each once. Otherwise one pass makes both,
  // and the op does not split.
  const bool dx_by_convolution = !x.device().is_cuda() && win.stride_h == 1 && win.stride_w == 1 &&
                                 win.pad_h < win.kernel_h && win.pad_w < win.kernel_w;
  auto gradients = [=](const Tensor& g, bool want_x, bool want_weights) {
    const Tensor dy = g.contiguous();
    Tensor dw, dx;
    if (want_weights) dw = zeros(saved_w.shape(), DType::Float32, dy.device());
    if (dy.device().is_cuda()) {
      if (want_x) dx = zeros(saved_x.shape(), DType::Float32, dy.device());
      add_gradients_on_gpu(forward, saved_x, saved_w, dy, dw, dx);
    } else {
      if (want_x && !dx_by_convolution) dx = zeros(saved_x.shape(), DType::Float32, dy.device());
      if (want_weights || dx.defined())
        add_gradients(forward, saved_x.data<float>(), saved_w.data<float>(), dy.data<float>(), dw.data<float>(),
                      dx.defined() ? dx.data<float>() : nullptr);
      if (want_x && dx_by_convolution) {
        // Stride 1: dX is itself a convolution, of dY with the flipped, transposed weight and
        // padding kernel - 1 - pad. That is im2col plus one GEMM with K = O * kh * kw, cheaper
        // than a GEMM with K = O followed by col2im's scattered adds.
        const Tensor flipped = flip_and_transpose(saved_w);
        const Window2d transposed{win.kernel_h, win.kernel_w, 1, 1, win.kernel_h - 1 - win.pad_h, win.kernel_w - 1 - win.pad_w};
        dx = empty(saved_x.shape(), DType::Float32, dy.device());
        convolve({n, out_channels, oh, ow, channels, transposed}, dy.data<float>(), flipped.data<float>(), dx.data<float>());
      }
    }
    Tensor db;
    if (has_bias && want_weights) {  // sum over images and pixels: reduce [N, O, P] over P, then over N
      Tensor per_image = empty({n, out_channels}, DType::Float32, dy.device());
      kernels::sum_dim(dy.device(), dy.data<float>(), per_image.data<float>(), n * out_channels, pixels, 1);
      db = empty({out_channels}, DType::Float32, dy.device());
      kernels::sum_dim(dy.device(), per_image.data<float>(), db.data<float>(), 1, n, out_channels);
    }
    return std::vector<Tensor>{dx, dw, db};
  };
  if (dx_by_convolution)
    return record("conv2d", out, {x, weight, bias}, PartialBackwardFunction([=](const Tensor& g, const std::vector<bool>& wanted) {
                    return gradients(g, need_x && wanted[0], wanted[1] || wanted[2]);
                  }));
  return record("conv2d", out, {x, weight, bias}, BackwardFunction([=](const Tensor& g) { return gradients(g, need_x, true); }));
}

Tensor max_pool2d(const Tensor& x, Size2 kernel, Size2 stride, Size2 padding) {
  detail::check_float_input("max_pool2d", "x", x);
  const Window2d win = make_window("max_pool2d", x, kernel, stride, padding);
  if (win.pad_h * 2 > win.kernel_h || win.pad_w * 2 > win.kernel_w)
    throw std::invalid_argument("max_pool2d: padding must be at most half the kernel size");
  const int64_t planes = x.shape()[0] * x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const Tensor input = x.contiguous();
  Tensor out = empty({x.shape()[0], x.shape()[1], win.out_size_h(h), win.out_size_w(w)}, DType::Float32, x.device());
  Tensor argmax = empty(out.shape(), DType::Int32, x.device());
  kernels::max_pool2d_forward(x.device(), input.data<float>(), out.data<float>(), argmax.data<int32_t>(), planes, h, w, win);
  const Shape input_shape = x.shape();
  return record("max_pool2d", out, {x}, [argmax, input_shape, planes, h, w, win](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = empty(input_shape, DType::Float32, dy.device());
    kernels::max_pool2d_backward(dy.device(), dy.data<float>(), argmax.data<int32_t>(), dx.data<float>(), planes, h, w, win);
    return std::vector<Tensor>{dx};
  });
}

Tensor avg_pool2d(const Tensor& x, Size2 kernel, Size2 stride, Size2 padding) {
  detail::check_float_input("avg_pool2d", "x", x);
  const Window2d win = make_window("avg_pool2d", x, kernel, stride, padding);
  const int64_t planes = x.shape()[0] * x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const Tensor input = x.contiguous();
  Tensor out = empty({x.shape()[0], x.shape()[1], win.out_size_h(h), win.out_size_w(w)}, DType::Float32, x.device());
  kernels::avg_pool2d_forward(x.device(), input.data<float>(), out.data<float>(), planes, h, w, win);
  const Shape input_shape = x.shape();
  return record("avg_pool2d", out, {x}, [input_shape, planes, h, w, win](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = empty(input_shape, DType::Float32, dy.device());
    kernels::avg_pool2d_backward(dy.device(), dy.data<float>(), dx.data<float>(), planes, h, w, win);
    return std::vector<Tensor>{dx};
  });
}

}  // namespace minipipe
