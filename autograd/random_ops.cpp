#include "autograd/random_ops.h"

#include <stdexcept>

#include "autograd/node.h"
#include "autograd/op_support.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe {

namespace {
// in -> out (both contiguous), row by row when the rows' numbers do not run on.
void apply_dropout(const Tensor& in, Tensor& out, float p, RandomKey key, int64_t element_offset, int64_t row_stride) {
  const int64_t rows = in.dim() > 0 ? in.shape()[0] : 1, row = rows > 0 ? in.numel() / rows : 0;
  if (row_stride == 0 || row_stride == row || rows <= 1) {
    kernels::dropout(in.device(), in.data<float>(), out.data<float>(), in.numel(), p, key.seed, key.stream, element_offset);
    return;
  }
  for (int64_t r = 0; r < rows; ++r)
    kernels::dropout(in.device(), in.data<float>() + r * row, out.data<float>() + r * row, row, p, key.seed, key.stream,
                     element_offset + r * row_stride);
}
}  // namespace

Tensor dropout(const Tensor& x, float p, bool training, RandomKey key, int64_t element_offset, int64_t row_stride) {
  detail::check_float_input("dropout", "x", x);
  if (!(p >= 0.0f && p < 1.0f))
    throw std::invalid_argument("dropout: probability " + std::to_string(p) + " must be in [0, 1)");
  const int64_t row = x.dim() > 0 && x.shape()[0] > 0 ? x.numel() / x.shape()[0] : x.numel();
  if (row_stride != 0 && row_stride < row)
    throw std::invalid_argument("dropout: a row stride of " + std::to_string(row_stride) + " is shorter than the rows of " +
                                shape_str(x.shape()) + ", so elements would share random numbers");
  if (!training || p == 0.0f) return x;
  const Tensor input = x.contiguous();
  Tensor out = empty(x.shape(), DType::Float32, x.device());
  apply_dropout(input, out, p, key, element_offset, row_stride);
  return record("dropout", out, {x}, [p, key, element_offset, row_stride](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = empty(dy.shape(), DType::Float32, dy.device());
    apply_dropout(dy, dx, p, key, element_offset, row_stride);
    return std::vector<Tensor>{dx};
  });
}

Tensor dropout(const Tensor& x, float p, bool training) {
  if (!training || p == 0.0f) return dropout(x, p, training, RandomKey{}, 0);
  return dropout(x, p, training, default_generator().next_key(), 0);
}

}  // namespace minipipe
