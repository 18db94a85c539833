#pragma once
// Shapes and strides are plain vectors of int64 (in elements, not bytes).
#include <cstdint>
#include <string>
#include <vector>

namespace minipipe {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3]"

// NumPy broadcasting: dims are aligned from the right; each pair must be equal or 1.
// Throws naming `op` and both shapes when they are incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Maps a possibly negative dim into [0, ndim); throws naming `op` when out of range.
int normalize_dim(int64_t dim, int64_t ndim, const char* op);

}  // namespace minipipe
