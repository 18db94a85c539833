#include "autograd/softmax.h"

#include <stdexcept>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "autograd/op_support.h"
#include "autograd/reduction.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe {

namespace {

using RowKernel = void (*)(const Device&, const float*, float*, int64_t, int64_t);
using RowBackward = void (*)(const Device&, const float*, const float*, float*, int64_t, int64_t);

Tensor last_dim_op(const char* name, const Tensor& x, RowKernel forward, RowBackward backward) {
  detail::check_float_input(name, "x", x);
  if (x.dim() == 0) throw std::invalid_argument(std::string(name) + ": needs at least one dim");
  const Tensor input = x.contiguous();
  const int64_t cols = x.shape().back(), rows = cols == 0 ? 0 : x.numel() / cols;
  Tensor out = empty(x.shape(), DType::Float32, x.device());
  forward(x.device(), input.data<float>(), out.data<float>(), rows, cols);
  const Tensor saved_y = out.detach();
  return record(name, out, {x}, [saved_y, rows, cols, backward](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = empty(dy.shape(), DType::Float32, dy.device());
    backward(dy.device(), saved_y.data<float>(), dy.data<float>(), dx.data<float>(), rows, cols);
    return std::vector<Tensor>{dx};
  });
}

}  // namespace

Tensor softmax(const Tensor& x) {
  return last_dim_op("softmax", x, kernels::softmax_forward, kernels::softmax_backward);
}

Tensor log_softmax(const Tensor& x) {
  return last_dim_op("log_softmax", x, kernels::log_softmax_forward, kernels::log_softmax_backward);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index) {
  detail::check_float_input("cross_entropy", "logits", logits);
  check_defined("cross_entropy", "targets", targets);
  check_dtype("cross_entropy", "targets", targets, DType::Int32);
  check_same_device("cross_entropy", logits, targets);
  if (logits.dim() < 1 ||
      Shape(logits.shape().begin(), logits.shape().end() - 1) != targets.shape())
    throw std::invalid_argument("cross_entropy: logits of shape " + shape_str(logits.shape()) +
                                " need targets of shape " +
                                shape_str(Shape(logits.shape().begin(), logits.shape().end() - (logits.dim() ? 1 : 0))) +
                                ", got " + shape_str(targets.shape()));
  const int64_t classes = logits.shape().back(), rows = targets.numel();
  const Tensor x = logits.contiguous(), t = targets.contiguous();
  // Targets are checked on the host (from a GPU that is a copy of 4 bytes a row), so that a
  // bad label is an exception here rather than an out-of-bounds read in a kernel.
  const Tensor host_targets = t.device().is_cpu() ? t : t.to(Device::cpu());
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t target = host_targets.data<int32_t>()[r];
    if (target == ignore_index) continue;
    if (target < 0 || target >= classes)
      throw std::out_of_range("cross_entropy: target " + std::to_string(target) + " at position " +
                              std::to_string(r) + " is not a class index in [0, " + std::to_string(classes) +
                              ") nor ignore_index " + std::to_string(ignore_index));
    ++counted;
  }
  Tensor row_loss = empty({rows}, DType::Float32, x.device());
  // The softmax is written for the backward pass only where there is one: it then needs no
  // exp and no logits (which the graph would otherwise keep, so the memory is the same).
  const bool backward = grad_enabled() && any_requires_grad({logits});
  Tensor probabilities = backward ? empty(x.shape(), DType::Float32, x.device()) : Tensor();
  kernels::cross_entropy_forward(x.device(), x.data<float>(), t.data<int32_t>(), row_loss.data<float>(),
                                 backward ? probabilities.data<float>() : nullptr, rows, classes, ignore_index);
  // The mean over counted rows; row_loss is 0 on ignored ones. No rows counted: loss 0.
  const float per_row = counted ? 1.0f / static_cast<float>(counted) : 0.0f;
  Tensor loss = scale(sum(row_loss), per_row);
  if (!backward) return loss;
  const Shape logits_shape = logits.shape();
  return record("cross_entropy", loss, {logits}, [probabilities, t, per_row, rows, classes, ignore_index, logits_shape](const Tensor& g) {
    Tensor dx = empty(logits_shape, DType::Float32, g.device());
    // dLoss/dlogits = g / counted * (softmax - onehot); the factor stays in device memory.
    const Tensor gradient_scale = scale(g.detach(), per_row).contiguous();
    kernels::cross_entropy_backward(g.device(), probabilities.data<float>(), t.data<int32_t>(),
                                    gradient_scale.data<float>(), dx.data<float>(), rows, classes, ignore_index);
    return std::vector<Tensor>{dx};
  });
}

}  // namespace minipipe
