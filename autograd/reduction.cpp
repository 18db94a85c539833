#include "autograd/reduction.h"

#include <algorithm>
#include <stdexcept>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "autograd/op_support.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe {

namespace {

// x seen as [outer, reduce, inner] around `dim`.
struct Split3 {
  int64_t outer = 1, reduce = 1, inner = 1;
  Split3(const Shape& shape, int dim) {
    for (int d = 0; d < static_cast<int>(shape.size()); ++d)
      (d < dim ? outer : d == dim ? reduce : inner) *= shape[d];
  }
};

Shape keepdim_shape(const Shape& shape, int dim) {
  Shape out = shape;
  out[dim] = 1;
  return out;
}

// Sorted, unique, non-negative dims; all dims when `dims` is empty is NOT implied.
std::vector<int> normalize_dims(const std::vector<int64_t>& dims, int64_t ndim, const char* op) {
  std::vector<int> out;
  for (int64_t d : dims) out.push_back(normalize_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    throw std::invalid_argument(std::string(op) + ": a dim is listed twice");
  return out;
}

Shape reduced_shape(const Shape& shape, const std::vector<int>& dims, bool keepdim) {
  Shape out;
  for (int d = 0; d < static_cast<int>(shape.size()); ++d) {
    const bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!reduced) out.push_back(shape[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

Tensor sum_one_dim(const Tensor& x, int dim) {
  const Tensor input = x.contiguous();
  const Split3 split(x.shape(), dim);
  Tensor out = empty(keepdim_shape(x.shape(), dim), DType::Float32, x.device());
  kernels::sum_dim(x.device(), input.data<float>(), out.data<float>(), split.outer, split.reduce, split.inner);
  const Shape input_shape = x.shape();
  return record("sum", out, {x}, [input_shape](const Tensor& g) {
    return std::vector<Tensor>{g.expand(input_shape)};
  });
}

Tensor max_one_dim(const Tensor& x, int dim) {
  const Tensor input = x.contiguous();
  const Split3 split(x.shape(), dim);
  if (split.reduce == 0) throw std::invalid_argument("max: cannot reduce an empty dim");
  Tensor out = empty(keepdim_shape(x.shape(), dim), DType::Float32, x.device());
  Tensor argmax = empty(out.shape(), DType::Int32, x.device());
  kernels::max_dim(x.device(), input.data<float>(), out.data<float>(), argmax.data<int32_t>(), split.outer,
                   split.reduce, split.inner);
  const Shape input_shape = x.shape();
  return record("max", out, {x}, [argmax, input_shape, split](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = empty(input_shape, DType::Float32, dy.device());
    kernels::max_dim_backward(dy.device(), dy.data<float>(), argmax.data<int32_t>(), dx.data<float>(), split.outer,
                              split.reduce, split.inner);
    return std::vector<Tensor>{dx};
  });
}

// Reduces one dim at a time (from the last, so earlier dim numbers stay valid), keeping
// dims, then drops them if asked. The per-dim steps compose their gradients.
template <class ReduceOne>
Tensor reduce_dims(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim,
                   const char* op, ReduceOne reduce_one) {
  detail::check_float_input(op, "x", x);
  const std::vector<int> sorted = normalize_dims(dims, x.dim(), op);
  Tensor out = x;
  for (auto it = sorted.rbegin(); it != sorted.rend(); ++it) out = reduce_one(out, *it);
  return keepdim ? out : out.reshape(reduced_shape(x.shape(), sorted, false));
}

std::vector<int64_t> all_dims(const Tensor& x) {
  std::vector<int64_t> dims(x.dim());
  for (int64_t d = 0; d < x.dim(); ++d) dims[d] = d;
  return dims;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_dims(x, dims, keepdim, "sum", sum_one_dim);
}

Tensor sum(const Tensor& x) { return sum(x, all_dims(x)); }

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  detail::check_float_input("mean", "x", x);
  int64_t count = 1;
  for (int d : normalize_dims(dims, x.dim(), "mean")) count *= x.shape()[d];
  if (count == 0) throw std::invalid_argument("mean: reducing over an empty dim of shape " + shape_str(x.shape()));
  return scale(sum(x, dims, keepdim), 1.0f / static_cast<float>(count));
}

Tensor mean(const Tensor& x) { return mean(x, all_dims(x)); }

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce_dims(x, dims, keepdim, "max", max_one_dim);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  detail::check_float_input("argmax", "x", x);
  const int d = normalize_dim(dim, x.dim(), "argmax");
  const Tensor input = x.contiguous();
  const Split3 split(x.shape(), d);
  Tensor values = empty(keepdim_shape(x.shape(), d), DType::Float32, x.device());
  Tensor indices = empty(values.shape(), DType::Int32, x.device());
  kernels::max_dim(x.device(), input.data<float>(), values.data<float>(), indices.data<int32_t>(), split.outer,
                   split.reduce, split.inner);
  return keepdim ? indices : indices.detach().reshape(reduced_shape(x.shape(), {d}, false));
}

}  // namespace minipipe
