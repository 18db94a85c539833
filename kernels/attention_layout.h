#pragma once
// Where fused attention's operands live. Each operand is [batch, heads, tokens, head_dim]
// with head_dim contiguous and the other three dims at any strides, so that the heads of a
// QKV projection's output [batch, tokens, 3, heads, head_dim] are read where they are, and
// the output is written straight into [batch, tokens, heads, head_dim], ready for the output
// projection: no transposed copies in or out. Shared by the CPU and CUDA kernels.
#include <cstdint>

#include "kernels/host_device.h"

namespace minipipe::kernels {

template <class T>
struct HeadRows {
  T* data;
  int64_t batch_stride, head_stride, token_stride;  // in floats

  MINIPIPE_HOST_DEVICE T* row(int64_t b, int64_t h, int64_t token) const {
    return data + b * batch_stride + h * head_stride + token * token_stride;
  }
};
using ConstHeadRows = HeadRows<const float>;
using MutableHeadRows = HeadRows<float>;

// queries <= keys: query q sits at position keys - queries + q of the sequence and sees
// keys 0..keys - queries + q (TeraPipe's slices attend over earlier slices' keys too).
struct AttentionSizes {
  int64_t batch, heads, queries, keys, head_dim;
  float scale;  // 1 / sqrt(head_dim)

  MINIPIPE_HOST_DEVICE int64_t visible_keys(int64_t query) const { return keys - queries + query + 1; }
  // For a block of queries from q0 and one of keys from k0: row r of the first sees key j of
  // the second when j <= r + block_diagonal(q0, k0).
  MINIPIPE_HOST_DEVICE int64_t block_diagonal(int64_t q0, int64_t k0) const { return q0 + (keys - queries) - k0; }
  // The first query that sees `key`.
  MINIPIPE_HOST_DEVICE int64_t first_query(int64_t key) const {
    const int64_t q = key - (keys - queries);
    return q < 0 ? 0 : q;
  }
};

}  // namespace minipipe::kernels
