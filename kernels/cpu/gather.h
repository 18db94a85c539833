#pragma once
// Index-driven kernels: embedding lookup, dropout masks, the causal attention mask.
#include <cstdint>

namespace minipipe::kernels::cpu {

// out[i, :] = weight[indices[i], :]
void embedding_forward(const float* weight, const int32_t* indices, float* out, int64_t count,
                       int64_t dim);
// dweight[indices[i], :] += dout[i, :]  (repeated indices accumulate)
void embedding_backward(const float* dout, const int32_t* indices, float* dweight, int64_t count,
                        int64_t dim);

// y[i] = x[i] / (1 - p) where the Philox uniform u(seed, stream, offset + i) >= p, else 0.
// The same call on dy gives the backward: the mask is recomputed, never stored.
void dropout(const float* x, float* y, int64_t n, float p, uint64_t seed, uint64_t stream,
             int64_t element_offset);

// in/out: [batch, queries, keys]. Query q sits at absolute position query_offset + q and may
// see keys 0..query_offset+q; other entries become `fill` (-inf forward, 0 backward).
void causal_mask(const float* in, float* out, int64_t batch, int64_t queries, int64_t keys,
                 int64_t query_offset, float fill);

}  // namespace minipipe::kernels::cpu
