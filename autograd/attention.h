#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace minipipe {

// scores [..., Tq, Tk]: query q sits at absolute position query_offset + q and sees only
// keys 0..query_offset+q; the rest become -inf. Gradient is zero where masked.
Tensor causal_mask(const Tensor& scores, int64_t query_offset);

// Causal scaled dot-product attention (Vaswani et al. 2017, eq. 1):
// softmax(q k^T / sqrt(D) + causal mask) v, with q [B, H, Tq, D] and k, v [B, H, Tk, D].
// Tk may exceed Tq: the queries are then the last Tq positions and the keys include those
// of earlier positions of the sequence. TeraPipe's token slices rely on this (section 3):
// a slice attends over the keys/values of every earlier slice.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v);

}  // namespace minipipe
