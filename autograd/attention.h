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
//
// Fused (FlashAttention, Dao et al. 2022; kernels/cpu/attention.h): no [Tq, Tk] scores are
// kept, forward or backward, and q, k, v are read at their strides (the last dim must be
// contiguous, else it is copied). The result is a [B, H, Tq, D] view whose memory is laid
// out [B, Tq, H, D], so that merging the heads back is a view too.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v);

// The same from unfused ops (matmul, causal_mask, softmax, matmul), which keep the [Tq, Tk]
// scores and probabilities for the backward pass: the fused op's oracle in tests and its
// baseline in benchmarks/attention_benchmark.
Tensor unfused_scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v);

// Causal self-attention straight from a QKV projection's output: qkv [B, T, 3 * heads * D],
// laid out as [B, T, 3, heads, D], gives [B, T, heads * D]. The heads are read in place and
// the backward writes dq, dk and dv into one [B, T, 3 * heads * D] gradient, so that no head
// is copied and no gradient is scattered into zeros and summed.
Tensor causal_self_attention(const Tensor& qkv, int64_t heads);

}  // namespace minipipe
