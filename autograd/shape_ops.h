#pragma once
// Joining and cutting tensors along a dim. (The single-tensor views — reshape, permute,
// narrow, expand, ... — are methods of Tensor, defined in shape_ops.cpp.)
#include <vector>

#include "tensor/tensor.h"

namespace minipipe {

// All tensors must match except along `dim`.
Tensor concat(const std::vector<Tensor>& tensors, int64_t dim);
// Views of x along `dim` with the given sizes (they must add up to x.size(dim)).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// `chunks` nearly equal views along `dim` (the last may be smaller).
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);

}  // namespace minipipe
