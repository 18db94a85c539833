#include "autograd/op_support.h"

#include <stdexcept>

#include "autograd/reduction.h"
#include "kernels/dispatch.h"

namespace minipipe::detail {

void check_kernels_available(const char* op, const Tensor& t) {
  if (t.device().is_cpu()) return;
  if (!kernels::cuda_built())
    throw std::runtime_error(std::string(op) + ": no kernel for device " + t.device().str() +
                             " in this build (no CUDA backend: rebuild with -Dcuda=enabled on a machine with nvcc); "
                             "use device 'cpu'");
}

void check_float_input(const char* op, const char* argument, const Tensor& t) {
  check_defined(op, argument, t);
  check_dtype(op, argument, t, DType::Float32);
  check_kernels_available(op, t);
}

Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape strides(shape.size(), 0);
  const size_t lead = shape.size() - t.shape().size();
  for (size_t d = 0; d < t.shape().size(); ++d)
    strides[lead + d] = t.shape()[d] == 1 ? 0 : t.strides()[d];
  return strides;
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const size_t lead = g.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t d = 0; d < g.shape().size(); ++d)
    if (d < lead || (shape[d - lead] == 1 && g.shape()[d] != 1)) dims.push_back(static_cast<int64_t>(d));
  return sum(g, dims, true).reshape(shape);
}

}  // namespace minipipe::detail
