#include "autograd/random_ops.h"

#include <stdexcept>

#include "autograd/node.h"
#include "autograd/op_support.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe {

Tensor dropout(const Tensor& x, float p, bool training, RandomKey key, int64_t element_offset) {
  detail::check_float_input("dropout", "x", x);
  if (!(p >= 0.0f && p < 1.0f))
    throw std::invalid_argument("dropout: probability " + std::to_string(p) + " must be in [0, 1)");
  if (!training || p == 0.0f) return x;
  const Tensor input = x.contiguous();
  Tensor out = empty(x.shape(), DType::Float32, x.device());
  kernels::dropout(out.device(), input.data<float>(), out.data<float>(), x.numel(), p, key.seed, key.stream, element_offset);
  return record("dropout", out, {x}, [p, key, element_offset](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = empty(dy.shape(), DType::Float32, dy.device());
    kernels::dropout(dx.device(), dy.data<float>(), dx.data<float>(), dy.numel(), p, key.seed, key.stream, element_offset);
    return std::vector<Tensor>{dx};
  });
}

Tensor dropout(const Tensor& x, float p, bool training) {
  if (!training || p == 0.0f) return dropout(x, p, training, RandomKey{}, 0);
  return dropout(x, p, training, default_generator().next_key(), 0);
}

}  // namespace minipipe
