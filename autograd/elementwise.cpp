#include "autograd/elementwise.h"

#include "autograd/node.h"
#include "autograd/op_support.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe {

using kernels::BinaryOp;
using kernels::UnaryOp;

namespace {

Tensor binary_forward(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  detail::check_float_input(name, "a", a);
  detail::check_float_input(name, "b", b);
  check_same_device(name, a, b);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = empty(shape, DType::Float32, a.device());
  const Shape a_strides = detail::broadcast_strides(a, shape);
  const Shape b_strides = detail::broadcast_strides(b, shape);
  kernels::binary_strided(a.device(), op, a.data<float>(), a_strides.data(), b.data<float>(),
                          b_strides.data(), out.data<float>(), shape.data(), static_cast<int>(shape.size()));
  return out;
}

Tensor unary(UnaryOp op, const char* name, const Tensor& x, float parameter = 0.0f) {
  detail::check_float_input(name, "x", x);
  const Tensor input = x.contiguous();
  Tensor out = empty(x.shape(), DType::Float32, x.device());
  kernels::unary_forward(x.device(), op, input.data<float>(), out.data<float>(), x.numel(), parameter);
  if (!any_requires_grad({x})) return out;
  // Keep only what the derivative reads, so that saved activations are not over-counted.
  const bool needs_x = op == UnaryOp::Log || op == UnaryOp::Relu || op == UnaryOp::Gelu || op == UnaryOp::Pow;
  const bool needs_y = op == UnaryOp::Exp || op == UnaryOp::Sqrt || op == UnaryOp::Tanh || op == UnaryOp::Sigmoid;
  const Tensor saved_x = needs_x ? input.detach() : Tensor();
  const Tensor saved_y = needs_y ? out.detach() : Tensor();
  return record(name, out, {x}, [op, parameter, saved_x, saved_y](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = empty(dy.shape(), DType::Float32, dy.device());
    kernels::unary_backward(dy.device(), op, saved_x.defined() ? saved_x.data<float>() : nullptr,
                            saved_y.defined() ? saved_y.data<float>() : nullptr, dy.data<float>(),
                            dx.data<float>(), dy.numel(), parameter);
    return std::vector<Tensor>{dx};
  });
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Add, "add", a, b);
  const Shape as = a.shape(), bs = b.shape();
  return record("add", out, {a, b}, [as, bs](const Tensor& g) {
    return std::vector<Tensor>{detail::sum_to_shape(g, as), detail::sum_to_shape(g, bs)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Sub, "sub", a, b);
  const Shape as = a.shape(), bs = b.shape();
  return record("sub", out, {a, b}, [as, bs](const Tensor& g) {
    return std::vector<Tensor>{detail::sum_to_shape(g, as), detail::sum_to_shape(neg(g), bs)};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Mul, "mul", a, b);
  if (!any_requires_grad({a, b})) return out;
  const Tensor sa = a.detach(), sb = b.detach();
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record("mul", out, {a, b}, [sa, sb, need_a, need_b](const Tensor& g) {
    return std::vector<Tensor>{need_a ? detail::sum_to_shape(mul(g, sb), sa.shape()) : Tensor(),
                               need_b ? detail::sum_to_shape(mul(g, sa), sb.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Div, "div", a, b);
  if (!any_requires_grad({a, b})) return out;
  const Tensor sb = b.detach(), sout = out.detach();
  const Shape as = a.shape();
  const bool need_b = b.requires_grad();
  return record("div", out, {a, b}, [sb, sout, as, need_b](const Tensor& g) {
    const Tensor ga = div(g, sb);
    // d(a/b)/db = -(a/b)/b = -out/b
    const Tensor gb = need_b ? detail::sum_to_shape(neg(mul(ga, sout)), sb.shape()) : Tensor();
    return std::vector<Tensor>{detail::sum_to_shape(ga, as), gb};
  });
}

Tensor neg(const Tensor& x) { return unary(UnaryOp::Neg, "neg", x); }
Tensor scale(const Tensor& x, float factor) { return unary(UnaryOp::Scale, "scale", x, factor); }
Tensor add_scalar(const Tensor& x, float addend) { return unary(UnaryOp::AddScalar, "add_scalar", x, addend); }
Tensor pow(const Tensor& x, float exponent) { return unary(UnaryOp::Pow, "pow", x, exponent); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::Sqrt, "sqrt", x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, "exp", x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::Log, "log", x); }
Tensor relu(const Tensor& x) { return unary(UnaryOp::Relu, "relu", x); }
Tensor gelu(const Tensor& x) { return unary(UnaryOp::Gelu, "gelu", x); }
Tensor tanh(const Tensor& x) { return unary(UnaryOp::Tanh, "tanh", x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::Sigmoid, "sigmoid", x); }

}  // namespace minipipe
