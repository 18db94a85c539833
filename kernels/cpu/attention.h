#pragma once
// Fused causal attention, FlashAttention's algorithm (Dao et al. 2022) on a CPU:
// softmax(scale * q k^T + causal mask) v without the [queries, keys] matrix. Scores are
// computed for a block of queries against a block of keys at a time, kept only while that
// block is in use; blocks the causal mask hides entirely are never computed.
// Layouts: kernels/attention_layout.h.
#include <cstdint>

#include "kernels/attention_layout.h"

namespace minipipe::kernels::cpu {

// out = attention(q, k, v); logsumexp [batch, heads, queries] (contiguous) gets each query
// row's log of the sum of its exps, all the backward needs to rebuild the probabilities.
void attention_forward(const AttentionSizes& sizes, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                       MutableHeadRows out, float* logsumexp);

// dq, dk, dv from dout, recomputing the scores block by block. row_dots [batch, heads,
// queries] is scratch (each query row's dout . out).
void attention_backward(const AttentionSizes& sizes, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                        ConstHeadRows out, ConstHeadRows dout, const float* logsumexp, float* row_dots,
                        MutableHeadRows dq, MutableHeadRows dk, MutableHeadRows dv);

}  // namespace minipipe::kernels::cpu
