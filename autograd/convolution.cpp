#include "autograd/convolution.h"

#include <stdexcept>

#include "autograd/node.h"
#include "autograd/op_support.h"
#include "kernels/cpu/convolution.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/reduce.h"
#include "tensor/factories.h"

namespace minipipe {

namespace {

using kernels::cpu::Window2d;

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
    if (bias.shape() != Shape{out_channels})
      throw std::invalid_argument("conv2d: bias must be [" + std::to_string(out_channels) + "], got " + shape_str(bias.shape()));
  }
  const Window2d win = make_window("conv2d", x, {weight.shape()[2], weight.shape()[3]}, stride, padding);
  const int64_t oh = win.out_size_h(h), ow = win.out_size_w(w), patch = channels * win.kernel_h * win.kernel_w;
  const int64_t pixels = oh * ow;

  const Tensor input = x.contiguous(), wt = weight.contiguous();
  Tensor out = empty({n, out_channels, oh, ow}, DType::Float32, x.device());
  Tensor columns = empty({patch, pixels}, DType::Float32, x.device());
  for (int64_t i = 0; i < n; ++i) {
    kernels::cpu::im2col(input.data<float>() + i * channels * h * w, columns.data<float>(), channels, h, w, win);
    float* out_i = out.data<float>() + i * out_channels * pixels;
    kernels::cpu::gemm(false, false, out_channels, pixels, patch, 1.0f, wt.data<float>(), patch,
                       columns.data<float>(), pixels, 0.0f, out_i, pixels);
    if (bias.defined()) {
      const Tensor b = bias.contiguous();
      for (int64_t o = 0; o < out_channels; ++o)
        for (int64_t p = 0; p < pixels; ++p) out_i[o * pixels + p] += b.data<float>()[o];
    }
  }
  if (!any_requires_grad({x, weight, bias})) return out;
  const Tensor saved_x = input.detach(), saved_w = wt.detach();
  const bool need_x = x.requires_grad(), has_bias = bias.defined();
  return record("conv2d", out, {x, weight, bias}, [=](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = need_x ? zeros(saved_x.shape(), DType::Float32, dy.device()) : Tensor();
    Tensor dw = zeros(saved_w.shape(), DType::Float32, dy.device());
    Tensor cols = empty({patch, pixels}, DType::Float32, dy.device());
    Tensor dcols = need_x ? empty({patch, pixels}, DType::Float32, dy.device()) : Tensor();
    for (int64_t i = 0; i < n; ++i) {
      const float* dy_i = dy.data<float>() + i * out_channels * pixels;
      // dW += dY_i cols_i^T  (im2col recomputed per image rather than stored for all)
      kernels::cpu::im2col(saved_x.data<float>() + i * channels * h * w, cols.data<float>(), channels, h, w, win);
      kernels::cpu::gemm(false, true, out_channels, patch, pixels, 1.0f, dy_i, pixels, cols.data<float>(), pixels,
                         1.0f, dw.data<float>(), patch);
      if (need_x) {  // dX_i = col2im(W^T dY_i)
        kernels::cpu::gemm(true, false, patch, pixels, out_channels, 1.0f, saved_w.data<float>(), patch, dy_i, pixels,
                           0.0f, dcols.data<float>(), pixels);
        kernels::cpu::col2im_add(dcols.data<float>(), dx.data<float>() + i * channels * h * w, channels, h, w, win);
      }
    }
    Tensor db;
    if (has_bias) {  // sum over images and pixels: reduce [N, O, P] over P, then over N
      Tensor per_image = empty({n, out_channels}, DType::Float32, dy.device());
      kernels::cpu::sum_dim(dy.data<float>(), per_image.data<float>(), n * out_channels, pixels, 1);
      db = empty({out_channels}, DType::Float32, dy.device());
      kernels::cpu::sum_dim(per_image.data<float>(), db.data<float>(), 1, n, out_channels);
    }
    return std::vector<Tensor>{dx, dw, db};
  });
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
  kernels::cpu::max_pool2d_forward(input.data<float>(), out.data<float>(), argmax.data<int32_t>(), planes, h, w, win);
  const Shape input_shape = x.shape();
  return record("max_pool2d", out, {x}, [argmax, input_shape, planes, h, w, win](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = empty(input_shape, DType::Float32, dy.device());
    kernels::cpu::max_pool2d_backward(dy.data<float>(), argmax.data<int32_t>(), dx.data<float>(), planes, h, w, win);
    return std::vector<Tensor>{dx};
  });
}

Tensor avg_pool2d(const Tensor& x, Size2 kernel, Size2 stride, Size2 padding) {
  detail::check_float_input("avg_pool2d", "x", x);
  const Window2d win = make_window("avg_pool2d", x, kernel, stride, padding);
  const int64_t planes = x.shape()[0] * x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const Tensor input = x.contiguous();
  Tensor out = empty({x.shape()[0], x.shape()[1], win.out_size_h(h), win.out_size_w(w)}, DType::Float32, x.device());
  kernels::cpu::avg_pool2d_forward(input.data<float>(), out.data<float>(), planes, h, w, win);
  const Shape input_shape = x.shape();
  return record("avg_pool2d", out, {x}, [input_shape, planes, h, w, win](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = empty(input_shape, DType::Float32, dy.device());
    kernels::cpu::avg_pool2d_backward(dy.data<float>(), dx.data<float>(), planes, h, w, win);
    return std::vector<Tensor>{dx};
  });
}

}  // namespace minipipe
