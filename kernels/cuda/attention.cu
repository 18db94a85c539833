// Each block owns one row: a query row for the forward and for dq, a key row for dk and dv.
// Thread t scores the t-th key (or query) of the current tile, with a serial dot product
// over head_dim; then thread d adds the tile's weighted rows into its own output
// component d. The tile's weights pass through shared memory.
#include <stdexcept>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"

namespace minipipe::kernels::cuda {

namespace {

constexpr int kMaxTile = 1024;  // threads per block at most, one key or query each

__device__ float dot(const float* a, const float* b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

struct RowOf {
  int64_t b, h, index;  // index: the query (or key) within its head
  __device__ RowOf(int64_t row, const AttentionSizes& s, int64_t per_head)
      : b(row / per_head / s.heads), h(row / per_head % s.heads), index(row % per_head) {}
};

// Online softmax over tiles of keys (FlashAttention, algorithm 1, one query row at a time).
__global__ void attention_forward_kernel(AttentionSizes s, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                                         MutableHeadRows out, float* logsumexp) {
  __shared__ float weights[kMaxTile];
  const RowOf at(blockIdx.x, s, s.queries);
  const float* query = q.row(at.b, at.h, at.index);
  const int64_t visible = s.visible_keys(at.index), d = threadIdx.x;
  float running_max = -INFINITY, running_sum = 0.0f, accumulator = 0.0f;
  for (int64_t k0 = 0; k0 < visible; k0 += blockDim.x) {
    const int64_t j = k0 + threadIdx.x;
    const float score = j < visible ? s.scale * dot(query, k.row(at.b, at.h, j), s.head_dim) : -INFINITY;
    const float new_max = fmaxf(running_max, block_max(score));
    const float p = j < visible ? expf(score - new_max) : 0.0f;
    const float rescale = expf(running_max - new_max);  // 0 on the first tile
    running_sum = running_sum * rescale + block_sum(p);
    running_max = new_max;
    weights[threadIdx.x] = p;
    __syncthreads();
    if (d < s.head_dim) {
      const int64_t tile = min(int64_t{blockDim.x}, visible - k0);
      accumulator *= rescale;
      for (int64_t t = 0; t < tile; ++t) accumulator += weights[t] * v.row(at.b, at.h, k0 + t)[d];
    }
    __syncthreads();  // weights is rewritten by the next tile
  }
  if (d < s.head_dim) out.row(at.b, at.h, at.index)[d] = accumulator / running_sum;
  if (threadIdx.x == 0) logsumexp[blockIdx.x] = running_max + logf(running_sum);
}

// dq for one query row, and the row's dout . out that dk's kernel needs:
// dS = P * (dP - rowdot), dq = scale * sum over keys of dS_j k_j.
__global__ void attention_query_grad_kernel(AttentionSizes s, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                                            ConstHeadRows out, ConstHeadRows dout, const float* logsumexp,
                                            float* row_dots, MutableHeadRows dq) {
  __shared__ float weights[kMaxTile];
  const RowOf at(blockIdx.x, s, s.queries);
  const float *query = q.row(at.b, at.h, at.index), *grad = dout.row(at.b, at.h, at.index);
  const int64_t visible = s.visible_keys(at.index), d = threadIdx.x;
  const float row_dot = block_sum(d < s.head_dim ? grad[d] * out.row(at.b, at.h, at.index)[d] : 0.0f);
  const float lse = logsumexp[blockIdx.x];
  float accumulator = 0.0f;
  for (int64_t k0 = 0; k0 < visible; k0 += blockDim.x) {
    const int64_t j = k0 + threadIdx.x;
    float ds = 0.0f;
    if (j < visible) {
      const float p = expf(s.scale * dot(query, k.row(at.b, at.h, j), s.head_dim) - lse);
      ds = p * (dot(grad, v.row(at.b, at.h, j), s.head_dim) - row_dot);
    }
    weights[threadIdx.x] = ds;
    __syncthreads();
    if (d < s.head_dim) {
      const int64_t tile = min(int64_t{blockDim.x}, visible - k0);
      for (int64_t t = 0; t < tile; ++t) accumulator += weights[t] * k.row(at.b, at.h, k0 + t)[d];
    }
    __syncthreads();
  }
  if (d < s.head_dim) dq.row(at.b, at.h, at.index)[d] = s.scale * accumulator;
  if (threadIdx.x == 0) row_dots[blockIdx.x] = row_dot;
}

// dk and dv for one key row, over the queries that see it:
// dv = sum of P_r dout_r, dk = scale * sum of dS_r q_r.
__global__ void attention_key_grad_kernel(AttentionSizes s, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                                          ConstHeadRows dout, const float* logsumexp, const float* row_dots,
                                          MutableHeadRows dk, MutableHeadRows dv) {
  __shared__ float probabilities[kMaxTile], score_grads[kMaxTile];
  const RowOf at(blockIdx.x, s, s.keys);
  const float *key = k.row(at.b, at.h, at.index), *value = v.row(at.b, at.h, at.index);
  const int64_t head = (at.b * s.heads + at.h) * s.queries, d = threadIdx.x;
  float key_grad = 0.0f, value_grad = 0.0f;
  for (int64_t r0 = s.first_query(at.index); r0 < s.queries; r0 += blockDim.x) {
    const int64_t r = r0 + threadIdx.x;
    float p = 0.0f, ds = 0.0f;
    if (r < s.queries) {
      p = expf(s.scale * dot(q.row(at.b, at.h, r), key, s.head_dim) - logsumexp[head + r]);
      ds = p * (dot(dout.row(at.b, at.h, r), value, s.head_dim) - row_dots[head + r]);
    }
    probabilities[threadIdx.x] = p;
    score_grads[threadIdx.x] = ds;
    __syncthreads();
    if (d < s.head_dim) {
      const int64_t tile = min(int64_t{blockDim.x}, s.queries - r0);
      for (int64_t t = 0; t < tile; ++t) {
        value_grad += probabilities[t] * dout.row(at.b, at.h, r0 + t)[d];
        key_grad += score_grads[t] * q.row(at.b, at.h, r0 + t)[d];
      }
    }
    __syncthreads();
  }
  if (d < s.head_dim) {
    dk.row(at.b, at.h, at.index)[d] = s.scale * key_grad;
    dv.row(at.b, at.h, at.index)[d] = value_grad;
  }
}

unsigned attention_threads(const AttentionSizes& s) {
  if (s.head_dim > kMaxAttentionHeadDim)
    throw std::invalid_argument("attention: head_dim " + std::to_string(s.head_dim) + " is more than the CUDA "
                                "kernel's " + std::to_string(kMaxAttentionHeadDim) + "; use fewer, larger heads");
  // One thread per output component, and as many keys (or queries) per tile: a warp for
  // heads up to 32 wide. Wider tiles would mean fewer passes but idle threads in the sums.
  return threads_per_row(s.head_dim);
}

}  // namespace

void attention_forward(const AttentionSizes& s, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                       MutableHeadRows out, float* logsumexp, cudaStream_t stream) {
  const int64_t rows = s.batch * s.heads * s.queries;
  if (rows == 0 || s.head_dim == 0) return;
  attention_forward_kernel<<<grid_for_rows(rows, "attention_forward"), attention_threads(s), 0, stream>>>(
      s, q, k, v, out, logsumexp);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

void attention_backward(const AttentionSizes& s, ConstHeadRows q, ConstHeadRows k, ConstHeadRows v,
                        ConstHeadRows out, ConstHeadRows dout, const float* logsumexp, float* row_dots,
                        MutableHeadRows dq, MutableHeadRows dk, MutableHeadRows dv, cudaStream_t stream) {
  const int64_t query_rows = s.batch * s.heads * s.queries, key_rows = s.batch * s.heads * s.keys;
  if (query_rows == 0 || s.head_dim == 0) return;
  const unsigned threads = attention_threads(s);
  attention_query_grad_kernel<<<grid_for_rows(query_rows, "attention_backward"), threads, 0, stream>>>(
      s, q, k, v, out, dout, logsumexp, row_dots, dq);
  MINIPIPE_CUDA_CHECK_LAUNCH();
  attention_key_grad_kernel<<<grid_for_rows(key_rows, "attention_backward"), threads, 0, stream>>>(
      s, q, k, v, dout, logsumexp, row_dots, dk, dv);
  MINIPIPE_CUDA_CHECK_LAUNCH();
}

}  // namespace minipipe::kernels::cuda
