#include "autograd/embedding.h"

#include <stdexcept>

#include "autograd/node.h"
#include "autograd/op_support.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe {

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  detail::check_float_input("embedding", "weight", weight);
  check_defined("embedding", "indices", indices);
  check_dtype("embedding", "indices", indices, DType::Int32);
  check_same_device("embedding", weight, indices);
  if (weight.dim() != 2)
    throw std::invalid_argument("embedding: weight must be [vocabulary, dim], got " + shape_str(weight.shape()));
  const int64_t vocabulary = weight.shape()[0], dim = weight.shape()[1], count = indices.numel();
  const Tensor w = weight.contiguous(), idx = indices.contiguous();
  // Indices are checked on the host (a copy from a GPU), so that a bad one is an exception
  // here rather than an out-of-bounds read in a kernel.
  const Tensor host_idx = idx.device().is_cpu() ? idx : idx.to(Device::cpu());
  for (int64_t i = 0; i < count; ++i) {
    const int32_t index = host_idx.data<int32_t>()[i];
    if (index < 0 || index >= vocabulary)
      throw std::out_of_range("embedding: index " + std::to_string(index) + " at position " + std::to_string(i) +
                              " is outside the table of " + std::to_string(vocabulary) + " rows");
  }
  Shape out_shape = indices.shape();
  out_shape.push_back(dim);
  Tensor out = empty(out_shape, DType::Float32, weight.device());
  kernels::embedding_forward(out.device(), w.data<float>(), idx.data<int32_t>(), out.data<float>(), count, dim);
  const Shape weight_shape = weight.shape();
  // The table is the only input: under a zero-bubble split the whole backward is W.
  return record("embedding", out, {weight}, [idx, weight_shape, count, dim](const Tensor& g, const std::vector<bool>& wanted) {
    if (!wanted[0]) return std::vector<Tensor>{Tensor()};
    const Tensor dy = g.contiguous();
    Tensor dw = zeros(weight_shape, DType::Float32, dy.device());
    kernels::embedding_backward(dy.device(), dy.data<float>(), idx.data<int32_t>(), dw.data<float>(), count, dim);
    return std::vector<Tensor>{dw};
  });
}

}  // namespace minipipe
