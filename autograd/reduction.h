#pragma once
// Reductions over chosen dims (negative dims count from the end). keepdim keeps each reduced
// dim with size 1, so the result broadcasts against the input.
#include <vector>

#include "tensor/tensor.h"

namespace minipipe {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor sum(const Tensor& x);  // all elements; a 0-dim tensor
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
// The gradient goes to the first maximal element of each reduced group.
Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Index of the first maximum along `dim` (int32, no gradient).
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);

}  // namespace minipipe
