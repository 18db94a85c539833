#pragma once
// Checks shared by the op definitions. Internal to autograd/.
#include <string>

#include "tensor/tensor.h"

namespace minipipe::detail {

// Which devices an op has kernels for. Every op runs on the CPU; those whose CUDA kernels
// exist say CpuAndCuda (and run them through kernels/dispatch.h).
enum class Backends { CpuOnly, CpuAndCuda };

// Throws unless t is defined, float32 and on a device the op has kernels for.
void check_float_input(const char* op, const char* argument, const Tensor& t,
                       Backends backends = Backends::CpuOnly);
// Throws unless the op has kernels for t's device in this build.
void check_kernels_available(const char* op, const Tensor& t, Backends backends = Backends::CpuOnly);
// Strides that read t as if it had `shape` (t broadcast to it): 0 on broadcast dims.
Shape broadcast_strides(const Tensor& t, const Shape& shape);
// Sum of g over the dims that broadcasting expanded, giving a tensor of `shape`.
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

}  // namespace minipipe::detail
