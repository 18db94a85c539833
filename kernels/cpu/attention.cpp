#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/lane_sum.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/threads.h"

namespace minipipe::kernels::cpu {

namespace {

// A block is 64 queries by 64 keys: its scores (16 KiB) stay in L1 while they are used.
constexpr int64_t kBlock = 64;
constexpr int kColumnVectors = kBlock / kLanes;  // 4 vectors of 16 make a score row
constexpr int kRowsAtOnce = 4;                   // rows sharing each load of a packed block

// A block's rows (queries in the forward, keys or values in the backward) transposed,
// [head_dim][kBlock], zero past its last row: the score kernel then reads sixteen rows'
// d-th components with one load. Whole 16 x 16 tiles are transposed in registers.
void pack_transposed(ConstHeadRows rows, int64_t b, int64_t h, int64_t first, int64_t count, int64_t head_dim,
                     float* packed) {
  const float* src = rows.row(b, h, first);
  const int64_t stride = rows.token_stride, whole_rows = count / kLanes * kLanes, whole_dims = head_dim / kLanes * kLanes;
  for (int64_t j = 0; j < whole_rows; j += kLanes)
    for (int64_t d = 0; d < whole_dims; d += kLanes)
      copy_transposed16(reinterpret_cast<const uint32_t*>(src + j * stride + d), stride,
                        reinterpret_cast<uint32_t*>(packed + d * kBlock + j), kBlock);
  for (int64_t d = 0; d < head_dim; ++d) {
    for (int64_t j = d < whole_dims ? whole_rows : 0; j < count; ++j) packed[d * kBlock + j] = src[j * stride + d];
    std::fill(packed + d * kBlock + count, packed + (d + 1) * kBlock, 0.0f);
  }
}

// Which score vectors (sixteen columns each) a group of rows needs, [first, end) of the
// block's kColumnVectors: on a block the causal diagonal crosses, a key row's scores for
// queries that do not see it yet, and a query row's for keys it does not see yet, are masked
// anyway, so they are never computed (FlashAttention skips whole masked blocks; this skips
// masked sixteenths of the diagonal ones too).
struct VectorRange {
  int first, end;
};

// `Vectors` score vectors, from where `packed` and `scores` point, for four rows (one load of
// each packed vector shared by the four: sixteen accumulators at most).
template <int Vectors>
void score_tile(const float* const* row, const float* packed, int64_t head_dim, float scale, int64_t valid,
                float* scores) {
  Floats16 sum[kRowsAtOnce][Vectors] = {};
  for (int64_t d = 0; d < head_dim; ++d) {
    Floats16 key[Vectors];
#pragma GCC unroll 4
    for (int c = 0; c < Vectors; ++c) {
      key[c] = load16(packed + d * kBlock + c * kLanes);
      keep_in_register(key[c]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < kRowsAtOnce; ++i) {
      const Floats16 x = splat16(row[i][d]);
#pragma GCC unroll 4
      for (int c = 0; c < Vectors; ++c) sum[i][c] = fma16(x, key[c], sum[i][c]);
    }
  }
  for (int64_t i = 0; i < valid; ++i)
    for (int c = 0; c < Vectors; ++c) store16(scores + i * kBlock + c * kLanes, sum[i][c] * scale);
}

// scores[r][j] = scale * rows[r] . packed row j, for `count` rows against one packed block
// (queries against keys, keys against queries, output gradients against values), only the
// vectors `needed(first row of a group)` names. Four rows at a time share each load of the
// packed block; the last group repeats its last row and stores only the real ones.
template <class Needed>
void block_scores(const float* const* rows, int64_t count, const float* packed, int64_t head_dim, float scale,
                  float* scores, Needed needed) {
  for (int64_t r0 = 0; r0 < count; r0 += kRowsAtOnce) {
    const float* row[kRowsAtOnce];
    for (int i = 0; i < kRowsAtOnce; ++i) row[i] = rows[std::min(r0 + i, count - 1)];
    const VectorRange range = needed(r0);
    const int64_t valid = std::min<int64_t>(kRowsAtOnce, count - r0), column = range.first * kLanes;
    float* out = scores + r0 * kBlock + column;
    switch (range.end - range.first) {
      case 0: break;
      case 1: score_tile<1>(row, packed + column, head_dim, scale, valid, out); break;
      case 2: score_tile<2>(row, packed + column, head_dim, scale, valid, out); break;
      case 3: score_tile<3>(row, packed + column, head_dim, scale, valid, out); break;
      default: score_tile<4>(row, packed + column, head_dim, scale, valid, out); break;
    }
  }
}

// Every product of a block with a matrix of rows has one shape:
//   out[i][d] += sum over t of weight(i, t) * inputs[t][d],
//   weight(i, t) = weights[i * out_stride + t * term_stride]
// (P V and dS K with a block's rows as weights; P^T dO and dS^T Q with its columns).
// Query row q of the block sees key j of the block when j <= q + diagonal; the weights of
// the pairs it does not see are 0, so their terms are skipped (on the blocks the diagonal
// crosses, where the weights past it need not even have been written).
struct WeightedRows {
  float* const* out;
  int64_t outs;
  const float* weights;
  int64_t out_stride, term_stride;
  const float* const* inputs;
  int64_t terms, dim;
  int64_t diagonal;
  bool outs_are_queries;  // and the terms keys (P V, dS K); else the other way round

  // The terms outputs [first, last] read: one range for the whole group.
  std::pair<int64_t, int64_t> terms_of(int64_t first, int64_t last) const {
    if (outs_are_queries) return {0, std::clamp<int64_t>(last + diagonal + 1, 0, terms)};
    return {std::clamp<int64_t>(first - diagonal, 0, terms), terms};
  }
};

// Four outputs by `Vectors` x 16 components in registers, over the terms they read.
template <int Vectors>
void accumulate_tile(const WeightedRows& w, int64_t i0, int64_t d0) {
  const int64_t valid = std::min<int64_t>(kRowsAtOnce, w.outs - i0);
  const auto [first_term, end_term] = w.terms_of(i0, i0 + valid - 1);
  if (first_term >= end_term) return;
  const float* weight_row[kRowsAtOnce];
  for (int i = 0; i < kRowsAtOnce; ++i) weight_row[i] = w.weights + (i0 + std::min<int64_t>(i, valid - 1)) * w.out_stride;
  Floats16 sum[kRowsAtOnce][Vectors] = {};
  for (int64_t t = first_term; t < end_term; ++t) {
    const float* x = w.inputs[t] + d0;
    Floats16 input[Vectors];
#pragma GCC unroll 4
    for (int c = 0; c < Vectors; ++c) {
      input[c] = load16(x + c * kLanes);
      keep_in_register(input[c]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < kRowsAtOnce; ++i) {
      const Floats16 weight = splat16(weight_row[i][t * w.term_stride]);
#pragma GCC unroll 4
      for (int c = 0; c < Vectors; ++c) sum[i][c] = fma16(weight, input[c], sum[i][c]);
    }
  }
  for (int64_t i = 0; i < valid; ++i)
    for (int c = 0; c < Vectors; ++c) {
      float* out = w.out[i0 + i] + d0 + c * kLanes;
      store16(out, load16(out) + sum[i][c]);
    }
}

void accumulate(const WeightedRows& w) {
  if (w.dim % kLanes != 0) {  // narrow or odd heads: plain loops
    for (int64_t i = 0; i < w.outs; ++i) {
      const auto [first_term, end_term] = w.terms_of(i, i);
      for (int64_t t = first_term; t < end_term; ++t) {
        const float weight = w.weights[i * w.out_stride + t * w.term_stride];
        for (int64_t d = 0; d < w.dim; ++d) w.out[i][d] += weight * w.inputs[t][d];
      }
    }
    return;
  }
  for (int64_t i0 = 0; i0 < w.outs; i0 += kRowsAtOnce)
    for (int64_t d0 = 0; d0 < w.dim; d0 += kColumnVectors * kLanes) {
      switch (std::min<int64_t>(kColumnVectors, (w.dim - d0) / kLanes)) {
        case 1: accumulate_tile<1>(w, i0, d0); break;
        case 2: accumulate_tile<2>(w, i0, d0); break;
        case 3: accumulate_tile<3>(w, i0, d0); break;
        default: accumulate_tile<4>(w, i0, d0); break;
      }
    }
}

// Scratch that lives as long as the kernel thread, so that a block does not allocate.
std::vector<float>& scratch(int which, size_t floats) {
  thread_local std::vector<float> buffers[3];
  std::vector<float>& buffer = buffers[which];
  if (buffer.size() < floats) buffer.resize(floats);
  return buffer;
}

// Forward over one block of query rows [q0, q1) of head (b, h): online softmax over the
// key blocks they see (FlashAttention, algorithm 1): each row keeps its running max m and
// sum l, and its output accumulator is rescaled by exp(m_old - m_new) when the max grows.
// The block computes S^T (keys down, its queries across) against its queries packed once,
// so that a query's softmax runs down a column, sixteen queries to a vector, and the keys
// are read where they are: only the queries are packed, once per query block.
void forward_query_block(const AttentionSizes& s, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                         MutableHeadRows out, float* logsumexp, int64_t b, int64_t h, int64_t q0, int64_t q1) {
  const int64_t rows = q1 - q0, dim = s.head_dim;
  float* packed_queries = scratch(0, dim * kBlock).data();
  pack_transposed(q, b, h, q0, rows, dim, packed_queries);
  float* accumulators = scratch(1, rows * dim).data();
  std::fill(accumulators, accumulators + rows * dim, 0.0f);
  float* accumulator_rows[kBlock];
  for (int64_t r = 0; r < rows; ++r) accumulator_rows[r] = accumulators + r * dim;
  // scores_t[j][r]: key j's score for query r, then its probability.
  float scores_t[kBlock * kBlock], running_max[kBlock], running_sum[kBlock], rescale[kBlock];
  std::fill(running_max, running_max + kBlock, -INFINITY);
  std::fill(running_sum, running_sum + kBlock, 0.0f);
  const float *key_rows[kBlock], *value_rows[kBlock];

  const int64_t keys_seen = s.visible_keys(q1 - 1);  // by the block's last row; the rest see fewer
  for (int64_t k0 = 0; k0 < keys_seen; k0 += kBlock) {
    const int64_t block_keys = std::min(kBlock, keys_seen - k0);
    for (int64_t j = 0; j < block_keys; ++j) {
      key_rows[j] = k.row(b, h, k0 + j);
      value_rows[j] = v.row(b, h, k0 + j);
    }
    const int64_t diagonal = s.block_diagonal(q0, k0);
    block_scores(key_rows, block_keys, packed_queries, dim, s.scale, scores_t, [&](int64_t j0) {
      return VectorRange{static_cast<int>(std::clamp<int64_t>(j0 - diagonal, 0, kBlock) / kLanes), kColumnVectors};
    });
    for (int64_t j = 0; j < block_keys; ++j) {  // queries before the diagonal do not see key j
      const int64_t hidden = std::min(kBlock, j - diagonal);
      if (hidden > 0) std::fill(scores_t + j * kBlock, scores_t + j * kBlock + hidden, -INFINITY);
    }
    for (int c = 0; c < kColumnVectors; ++c) {  // sixteen queries at a time, over the keys they see
      const int64_t column = c * kLanes, seen = std::clamp<int64_t>(column + kLanes + diagonal, 0, block_keys);
      if (seen == 0) {  // none of the sixteen sees a key of this block
        store16(rescale + column, splat16(1.0f));
        continue;
      }
      Floats16 block_max = load16(scores_t + column);
      for (int64_t j = 1; j < seen; ++j) block_max = max16(block_max, load16(scores_t + j * kBlock + column));
      const Floats16 old_max = load16(running_max + column), new_max = max16(old_max, block_max);
      Floats16 sum{};
      for (int64_t j = 0; j < seen; ++j) {
        const Floats16 p = fast_exp(load16(scores_t + j * kBlock + column) - new_max);
        store16(scores_t + j * kBlock + column, p);
        sum += p;
      }
      const Floats16 factor = fast_exp(old_max - new_max);  // 0 on the first block: old_max is -inf
      store16(rescale + column, factor);
      store16(running_sum + column, load16(running_sum + column) * factor + sum);
      store16(running_max + column, new_max);
    }
    for (int64_t r = 0; r < rows; ++r)
      if (rescale[r] != 1.0f)
        for (int64_t d = 0; d < dim; ++d) accumulator_rows[r][d] *= rescale[r];
    accumulate({accumulator_rows, rows, scores_t, 1, kBlock, value_rows, block_keys, dim, diagonal, true});  // O += P V
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* o = out.row(b, h, q0 + r);
    const float inverse = 1.0f / running_sum[r];
    for (int64_t d = 0; d < dim; ++d) o[d] = accumulators[r * dim + d] * inverse;
    logsumexp[(b * s.heads + h) * s.queries + q0 + r] = running_max[r] + std::log(running_sum[r]);
  }
}

// Backward of one head (FlashAttention, algorithm 2 of FlashAttention-2's ordering): key
// blocks outside, the query blocks that see them inside. Each step recomputes the block's
// probabilities P = exp(S - logsumexp) and gives
//   dV_j += P^T dO,  dP = dO V_j^T,  dS = P * (dP - rowdot),  dQ += dS K_j,  dK_j += dS^T Q
// with rowdot = dO . O per query row (the softmax backward's sum, FlashAttention eq. 4).
// One thread owns the head, so dq accumulates across key blocks without races.
void backward_head(const AttentionSizes& s, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v, ConstHeadRows out,
                   ConstHeadRows dout, const float* logsumexp, float* row_dots, MutableHeadRows dq,
                   MutableHeadRows dk, MutableHeadRows dv, int64_t b, int64_t h) {
  const int64_t dim = s.head_dim, head = (b * s.heads + h) * s.queries;
  const float* lse = logsumexp + head;
  float* dots = row_dots + head;
  for (int64_t r = 0; r < s.queries; ++r) {
    const float *o = out.row(b, h, r), *g = dout.row(b, h, r);
    dots[r] = static_cast<float>(lane_sum(dim, [&](int64_t d) { return o[d] * g[d]; }));
    std::fill(dq.row(b, h, r), dq.row(b, h, r) + dim, 0.0f);
  }
  float* packed_keys = scratch(0, dim * kBlock).data();
  float* packed_values = scratch(1, dim * kBlock).data();
  float* key_grads = scratch(2, 2 * kBlock * dim).data();
  float* value_grads = key_grads + kBlock * dim;
  float p[kBlock * kBlock], ds[kBlock * kBlock];
  const float *query_rows[kBlock], *grad_rows[kBlock], *key_rows[kBlock];
  float *dq_rows[kBlock], *key_grad_rows[kBlock], *value_grad_rows[kBlock];
  for (int64_t j = 0; j < kBlock; ++j) {
    key_grad_rows[j] = key_grads + j * dim;
    value_grad_rows[j] = value_grads + j * dim;
  }

  for (int64_t k0 = 0; k0 < s.keys; k0 += kBlock) {
    const int64_t block_keys = std::min(kBlock, s.keys - k0);
    pack_transposed(k, b, h, k0, block_keys, dim, packed_keys);
    pack_transposed(v, b, h, k0, block_keys, dim, packed_values);
    for (int64_t j = 0; j < block_keys; ++j) key_rows[j] = k.row(b, h, k0 + j);
    std::fill(key_grads, key_grads + 2 * kBlock * dim, 0.0f);
    for (int64_t q0 = s.first_query(k0); q0 < s.queries; q0 += kBlock) {
      const int64_t rows = std::min(kBlock, s.queries - q0);
      for (int64_t r = 0; r < rows; ++r) {
        query_rows[r] = q.row(b, h, q0 + r);
        grad_rows[r] = dout.row(b, h, q0 + r);
        dq_rows[r] = dq.row(b, h, q0 + r);
      }
      const int64_t diagonal = s.block_diagonal(q0, k0);
      const auto keys_seen = [&](int64_t r0) {  // by rows r0..r0 + 3, in vectors
        const int64_t last_key = r0 + kRowsAtOnce - 1 + diagonal;
        return VectorRange{0, last_key < 0 ? 0 : static_cast<int>(std::min<int64_t>(kColumnVectors, last_key / kLanes + 1))};
      };
      block_scores(query_rows, rows, packed_keys, dim, s.scale, p, keys_seen);
      block_scores(grad_rows, rows, packed_values, dim, 1.0f, ds, keys_seen);  // dP, overwritten by dS
      for (int64_t r = 0; r < rows; ++r) {
        float *pr = p + r * kBlock, *dsr = ds + r * kBlock;
        const int64_t visible = std::clamp<int64_t>(r + diagonal + 1, 0, block_keys);
        const int64_t vectors = (visible + kLanes - 1) / kLanes;
        // Keys it does not see become -inf (probabilities of 0) in the vectors it computes:
        // those past the causal diagonal and the block's padding past its last key.
        std::fill(pr + visible, pr + vectors * kLanes, -INFINITY);
        const Floats16 lse_r = splat16(lse[q0 + r]), dot_r = splat16(dots[q0 + r]);
        for (int c = 0; c < vectors; ++c) {
          const Floats16 probability = fast_exp(load16(pr + c * kLanes) - lse_r);
          store16(pr + c * kLanes, probability);
          store16(dsr + c * kLanes, probability * (load16(dsr + c * kLanes) - dot_r));
        }
        for (int64_t c = vectors; c < kColumnVectors; ++c) {  // keys it does not see: never computed
          store16(pr + c * kLanes, Floats16{});
          store16(dsr + c * kLanes, Floats16{});
        }
      }
      accumulate({dq_rows, rows, ds, kBlock, 1, key_rows, block_keys, dim, diagonal, true});               // dQ += dS K
      accumulate({value_grad_rows, block_keys, p, 1, kBlock, grad_rows, rows, dim, diagonal, false});      // dV += P^T dO
      accumulate({key_grad_rows, block_keys, ds, 1, kBlock, query_rows, rows, dim, diagonal, false});      // dK += dS^T Q
    }
    for (int64_t j = 0; j < block_keys; ++j) {
      float *dk_row = dk.row(b, h, k0 + j), *dv_row = dv.row(b, h, k0 + j);
      for (int64_t d = 0; d < dim; ++d) {
        dk_row[d] = s.scale * key_grads[j * dim + d];
        dv_row[d] = value_grads[j * dim + d];
      }
    }
  }
  for (int64_t r = 0; r < s.queries; ++r) {
    float* row = dq.row(b, h, r);
    for (int64_t d = 0; d < dim; ++d) row[d] *= s.scale;
  }
}

}  // namespace

void attention_forward(const AttentionSizes& s, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                       MutableHeadRows out, float* logsumexp) {
  const int64_t query_blocks = (s.queries + kBlock - 1) / kBlock, heads = s.batch * s.heads;
  // Work per item: about a block's rows times the keys they see, times head_dim.
  parallel_for(heads * query_blocks, kBlock * s.keys * s.head_dim, [&](int64_t item) {
    const int64_t head = item / query_blocks, q0 = item % query_blocks * kBlock;
    forward_query_block(s, q, k, v, out, logsumexp, head / s.heads, head % s.heads, q0,
                        std::min(q0 + kBlock, s.queries));
  });
}

void attention_backward(const AttentionSizes& s, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                        ConstHeadRows out, ConstHeadRows dout, const float* logsumexp, float* row_dots,
                        MutableHeadRows dq, MutableHeadRows dk, MutableHeadRows dv) {
  parallel_for(s.batch * s.heads, s.queries * s.keys * s.head_dim, [&](int64_t head) {
    backward_head(s, q, k, v, out, dout, logsumexp, row_dots, dq, dk, dv, head / s.heads, head % s.heads);
  });
}

}  // namespace minipipe::kernels::cpu
