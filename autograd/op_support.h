#pragma once
// Checks shared by the op definitions. Internal to autograd/.
#include <string>

#include "tensor/tensor.h"

namespace minipipe::detail {

// Throws unless t is defined, float32 and on a device this build has kernels for (every op
// has a CPU and a CUDA kernel, run through kernels/dispatch.h).
void check_float_input(const char* op, const char* argument, const Tensor& t);
// Throws unless this build has kernels for t's device.
void check_kernels_available(const char* op, const Tensor& t);
// Strides that read t as if it had `shape` (t broadcast to it): 0 on broadcast dims.
Shape broadcast_strides(const Tensor& t, const Shape& shape);
// Sum of g over the dims that broadcasting expanded, giving a tensor of `shape`.
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

}  // namespace minipipe::detail
