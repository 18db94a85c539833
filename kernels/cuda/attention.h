#pragma once
// Fused causal attention on a stream: the CPU kernels' algorithm and meaning
// (kernels/cpu/attention.h), plain first: one block per query row (forward, dq) or key row
// (dk, dv), a tile of keys or queries per pass with one thread each, and an online softmax
// across tiles, so that no [queries, keys] matrix is ever stored. head_dim <= 1024.
#include <cuda_runtime_api.h>

#include "kernels/attention_layout.h"

namespace minipipe::kernels::cuda {

constexpr int64_t kMaxAttentionHeadDim = 1024;

void attention_forward(const AttentionSizes& sizes, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                       MutableHeadRows out, float* logsumexp, cudaStream_t stream);
void attention_backward(const AttentionSizes& sizes, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                        ConstHeadRows out, ConstHeadRows dout, const float* logsumexp, float* row_dots,
                        MutableHeadRows dq, MutableHeadRows dk, MutableHeadRows dv, cudaStream_t stream);

}  // namespace minipipe::kernels::cuda
