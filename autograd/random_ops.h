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
Tensor dropout(const Tensor& x, float p, bool training, RandomKey key, int64_t element_offset = 0);
// Draws the key from this thread's default generator (checkpoint() replays it).
Tensor dropout(const Tensor& x, float p, bool training = true);

}  // namespace minipipe
