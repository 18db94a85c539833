#include "autograd/matmul.h"

#include <algorithm>
#include <stdexcept>

#include "autograd/node.h"
#include "autograd/op_support.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe {

namespace {

// How GEMM reads the last two dims of a tensor: rows of stride `leading`, or the transpose.
struct MatrixLayout {
  Tensor tensor;  // possibly a contiguous copy
  bool transposed = false;
  int64_t leading = 0;
};

MatrixLayout layout_of(const Tensor& t) {
  const int64_t n = t.dim();
  const int64_t rows = t.shape()[n - 2], cols = t.shape()[n - 1];
  const int64_t row_stride = t.strides()[n - 2], col_stride = t.strides()[n - 1];
  if (col_stride == 1 && (rows <= 1 || row_stride >= cols)) return {t, false, rows <= 1 ? cols : row_stride};
  if (row_stride == 1 && (cols <= 1 || col_stride >= rows)) return {t, true, cols <= 1 ? rows : col_stride};
  const Tensor copy = t.contiguous();
  return {copy, false, cols};
}

// Element offsets of every matrix in the batch dims of t (through its strides).
std::vector<int64_t> batch_offsets(const Tensor& t, int64_t batch_dims) {
  std::vector<int64_t> offsets{0};
  for (int64_t d = 0; d < batch_dims; ++d) {
    std::vector<int64_t> next;
    for (int64_t base : offsets)
      for (int64_t i = 0; i < t.shape()[d]; ++i) next.push_back(base + i * t.strides()[d]);
    offsets.swap(next);
  }
  return offsets;
}

Tensor matmul_forward(const Tensor& a, const Tensor& b, float alpha) {
  const int64_t m = a.shape()[a.dim() - 2], k = a.shape()[a.dim() - 1], n = b.shape()[b.dim() - 1];
  Shape out_shape(a.shape().begin(), a.shape().end() - 2);
  out_shape.push_back(m);
  out_shape.push_back(n);
  // Nothing to compute (no rows or columns), or a sum over nothing (k == 0): left out of the
  // GEMMs below, which would divide by a zero size.
  if (m == 0 || n == 0 || k == 0) return zeros(out_shape, DType::Float32, a.device());
  Tensor out = empty(out_shape, DType::Float32, a.device());
  if (b.dim() == 2 && a.dim() > 2 && a.is_contiguous()) {
    // Fold the batch into the rows: one large GEMM instead of many small ones.
    const MatrixLayout lb = layout_of(b);
    kernels::gemm(out.device(), false, lb.transposed, out.numel() / n, n, k, alpha, a.data<float>(), k,
                       lb.tensor.data<float>(), lb.leading, 0.0f, out.data<float>(), n);
    return out;
  }
  const MatrixLayout la = layout_of(a), lb = layout_of(b);
  const int64_t batch_dims = a.dim() - 2;
  const std::vector<int64_t> a_offsets = batch_offsets(la.tensor, batch_dims);
  const std::vector<int64_t> b_offsets = b.dim() == 2 ? std::vector<int64_t>(a_offsets.size(), 0)
                                                      : batch_offsets(lb.tensor, batch_dims);
  // Runs of matrices whose offsets step evenly in both inputs go to one batched GEMM: the
  // whole batch for contiguous inputs, one run per batch entry for attention's head-split
  // views (heads step by head_dim inside a batch entry, batch entries by more).
  const int64_t count = static_cast<int64_t>(a_offsets.size());
  for (int64_t first = 0; first < count;) {
    const int64_t step_a = first + 1 < count ? a_offsets[first + 1] - a_offsets[first] : 0;
    const int64_t step_b = first + 1 < count ? b_offsets[first + 1] - b_offsets[first] : 0;
    int64_t last = first + 1;
    while (last < count && a_offsets[last] - a_offsets[last - 1] == step_a &&
           b_offsets[last] - b_offsets[last - 1] == step_b)
      ++last;
    kernels::gemm_batched(out.device(), la.transposed, lb.transposed, m, n, k, alpha,
                          la.tensor.data<float>() + a_offsets[first], la.leading, step_a,
                          lb.tensor.data<float>() + b_offsets[first], lb.leading, step_b, 0.0f,
                          out.data<float>() + first * m * n, n, m * n, last - first);
    first = last;
  }
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, float alpha) {
  detail::check_float_input("matmul", "a", a);
  detail::check_float_input("matmul", "b", b);
  check_same_device("matmul", a, b);
  const bool batched_b = b.dim() > 2;
  const bool shapes_ok = a.dim() >= 2 && b.dim() >= 2 &&
                         a.shape()[a.dim() - 1] == b.shape()[b.dim() - 2] &&
                         (!batched_b || (a.dim() == b.dim() &&
                                         std::equal(a.shape().begin(), a.shape().end() - 2, b.shape().begin())));
  if (!shapes_ok)
    throw std::invalid_argument("matmul: cannot multiply " + shape_str(a.shape()) + " by " + shape_str(b.shape()) +
                                "; need [..., M, K] @ [K, N] or [..., M, K] @ [..., K, N] with equal batch dims");
  Tensor out = matmul_forward(a, b, alpha);
  if (!any_requires_grad({a, b})) return out;
  const Tensor sa = a.detach(), sb = b.detach();
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record("matmul", out, {a, b}, [sa, sb, need_a, need_b, alpha](const Tensor& g, const std::vector<bool>& wanted) {
    // dA = alpha g B^T, dB = alpha A^T g; with a 2-D B shared across the batch, dB sums over
    // the batch.
    Tensor ga, gb;
    if (need_a && wanted[0]) ga = matmul(g, sb.transpose(-1, -2), alpha);
    if (need_b && wanted[1]) {
      if (sb.dim() == 2 && sa.dim() > 2) {
        // The rows of every batch entry, counted from the shape: reshape cannot infer a -1
        // when the other dim is 0.
        const int64_t rows = shape_numel(Shape(sa.shape().begin(), sa.shape().end() - 1));
        const int64_t k = sa.shape().back(), n = g.shape().back();
        gb = matmul(sa.reshape({rows, k}).transpose(0, 1), g.reshape({rows, n}), alpha);
      } else {
        gb = matmul(sa.transpose(-1, -2), g, alpha);
      }
    }
    return std::vector<Tensor>{ga, gb};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  detail::check_float_input("linear", "x", x);
  detail::check_float_input("linear", "weight", weight);
  check_same_device("linear", x, weight);
  if (weight.dim() != 2 || x.dim() < 1 || x.shape().back() != weight.shape()[1])
    throw std::invalid_argument("linear: input " + shape_str(x.shape()) + " does not fit weight " +
                                shape_str(weight.shape()) + "; need [..., in] and [out, in]");
  const int64_t in = weight.shape()[1], out_features = weight.shape()[0];
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) rows *= x.shape()[d];
  if (bias.defined()) {
    detail::check_float_input("linear", "bias", bias);
    check_same_device("linear", x, bias);
    if (bias.shape() != Shape{out_features})
      throw std::invalid_argument("linear: bias must be [" + std::to_string(out_features) + "], got " + shape_str(bias.shape()));
  }
  const Tensor xc = x.contiguous(), wc = weight.contiguous();
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Tensor y = empty(out_shape, DType::Float32, x.device());
  if (bias.defined())
    kernels::gemm_plus_bias(y.device(), false, true, rows, out_features, in, xc.data<float>(), in, wc.data<float>(), in,
                            bias.contiguous().data<float>(), y.data<float>(), out_features);
  else
    kernels::gemm(y.device(), false, true, rows, out_features, in, 1.0f, xc.data<float>(), in, wc.data<float>(), in,
                  0.0f, y.data<float>(), out_features);
  if (!any_requires_grad({x, weight, bias})) return y;
  const Tensor sx = xc.detach(), sw = wc.detach();
  const bool need_x = x.requires_grad(), need_w = weight.requires_grad(), need_b = bias.defined() && bias.requires_grad();
  return record("linear", y, {x, weight, bias}, [=](const Tensor& g, const std::vector<bool>& wanted) {
    const Tensor dy = g.contiguous();
    Tensor dx, dw, db;
    if (need_x && wanted[0]) {  // dX = dY W
      dx = empty(sx.shape(), DType::Float32, dy.device());
      kernels::gemm(dy.device(), false, false, rows, in, out_features, 1.0f, dy.data<float>(), out_features,
                    sw.data<float>(), in, 0.0f, dx.data<float>(), in);
    }
    if (need_w && wanted[1]) {  // dW = dY^T X over all rows
      dw = empty(sw.shape(), DType::Float32, dy.device());
      kernels::gemm(dy.device(), true, false, out_features, in, rows, 1.0f, dy.data<float>(), out_features,
                    sx.data<float>(), in, 0.0f, dw.data<float>(), in);
    }
    if (need_b && wanted[2]) {
      db = empty({out_features}, DType::Float32, dy.device());
      kernels::sum_dim(dy.device(), dy.data<float>(), db.data<float>(), 1, rows, out_features);
    }
    return std::vector<Tensor>{dx, dw, db};
  });
}

}  // namespace minipipe
