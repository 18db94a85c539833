#pragma once
// Random ops whose masks are a pure function of a key (DESIGN.md decision 9).
#include <cstdint>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace minipipe {

// Zeroes each element with probability p and scales the rest by 1/(1-p). Element i of x
// uses the Philox number (key, element_offset + i): a pipeline passes the micro-batch's
// position in the mini-batch as element_offset, so the mask does not depend on how the
// batch was cut. The mask is recomputed in backward, never stored.
// With a row_stride, x is read as rows along its first dimension and element i of row r
// uses number element_offset + r * row_stride + i: a token slice of a batch of sequences
// passes the whole sequence's size, so its elements keep their unsliced numbers (TeraPipe).
Tensor dropout(const Tensor& x, float p, bool training, RandomKey key, int64_t element_offset = 0,
               int64_t row_stride = 0);
// Draws the key from this thread's default generator (checkpoint() replays it).
Tensor dropout(const Tensor& x, float p, bool training = true);

}  // namespace minipipe
