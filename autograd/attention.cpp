#include "autograd/attention.h"

#include <cmath>
#include <utility>
#include <limits>
#include <stdexcept>

#include "autograd/elementwise.h"
#include "autograd/matmul.h"
#include "autograd/node.h"
#include "autograd/op_support.h"
#include "autograd/softmax.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe {

Tensor causal_mask(const Tensor& scores, int64_t query_offset) {
  detail::check_float_input("causal_mask", "scores", scores);
  if (scores.dim() < 2) throw std::invalid_argument("causal_mask: scores must be [..., Tq, Tk], got " + shape_str(scores.shape()));
  const int64_t queries = scores.shape()[scores.dim() - 2], keys = scores.shape()[scores.dim() - 1];
  if (query_offset < 0 || query_offset + queries > keys)
    throw std::invalid_argument("causal_mask: " + std::to_string(queries) + " queries at offset " +
                                std::to_string(query_offset) + " need at least " + std::to_string(query_offset + queries) +
                                " keys, got " + std::to_string(keys));
  const int64_t batch = queries * keys == 0 ? 0 : scores.numel() / (queries * keys);
  const Tensor input = scores.contiguous();
  Tensor out = empty(scores.shape(), DType::Float32, scores.device());
  kernels::causal_mask(scores.device(), input.data<float>(), out.data<float>(), batch, queries, keys, query_offset,
                       -std::numeric_limits<float>::infinity());
  return record("causal_mask", out, {scores}, [batch, queries, keys, query_offset](const Tensor& g) {
    const Tensor dy = g.contiguous();
    Tensor dx = empty(dy.shape(), DType::Float32, dy.device());
    kernels::causal_mask(dy.device(), dy.data<float>(), dx.data<float>(), batch, queries, keys, query_offset, 0.0f);
    return std::vector<Tensor>{dx};
  });
}

namespace {

void check_heads(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  for (auto [name, t] : {std::pair{"q", q}, {"k", k}, {"v", v}}) {
    detail::check_float_input(op, name, t);
    if (t.dim() != 4)
      throw std::invalid_argument(std::string(op) + ": " + name + " must be [batch, heads, tokens, head_dim], got " +
                                  shape_str(t.shape()));
  }
  check_same_device(op, q, k);
  check_same_device(op, q, v);
  const bool same_batch = q.shape()[0] == k.shape()[0] && q.shape()[1] == k.shape()[1] && q.shape()[3] == k.shape()[3];
  if (!same_batch || k.shape() != v.shape() || k.shape()[2] < q.shape()[2])
    throw std::invalid_argument(std::string(op) + ": q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) +
                                ", v " + shape_str(v.shape()) + " do not fit: k and v must be equal, share batch, "
                                "heads and head_dim with q, and have at least as many tokens");
}

// [B, H, T, D] with D contiguous, as the kernels read it.
template <class T>
kernels::HeadRows<T> head_rows(const Tensor& t, T* data) {
  return {data, t.strides()[0], t.strides()[1], t.strides()[2]};
}
kernels::ConstHeadRows rows_of(const Tensor& t) { return head_rows<const float>(t, t.data<float>()); }
kernels::MutableHeadRows mutable_rows_of(const Tensor& t) { return head_rows<float>(t, t.data<float>()); }

Tensor with_contiguous_head_dim(const Tensor& t) { return t.strides()[3] == 1 ? t : t.contiguous(); }

// A [B, H, T, D] tensor whose memory is [B, T, H, D]: the layout heads come from and go to.
Tensor empty_heads(int64_t batch, int64_t heads, int64_t tokens, int64_t head_dim, Device device) {
  return empty({batch, tokens, heads, head_dim}, DType::Float32, device).permute({0, 2, 1, 3});
}

kernels::AttentionSizes sizes_of(const Tensor& q, const Tensor& k) {
  const Shape& s = q.shape();
  return {s[0], s[1], s[2], k.shape()[2], s[3], 1.0f / std::sqrt(static_cast<float>(s[3]))};
}

struct ForwardResult {
  Tensor out;        // [B, H, Tq, D], laid out [B, Tq, H, D]
  Tensor logsumexp;  // [B, H, Tq]
};

// q, k, v: detached [B, H, T, D] views with a contiguous head_dim.
ForwardResult fused_forward(const Tensor& q, const Tensor& k, const Tensor& v) {
  const kernels::AttentionSizes sizes = sizes_of(q, k);
  ForwardResult r{empty_heads(sizes.batch, sizes.heads, sizes.queries, sizes.head_dim, q.device()),
                  empty({sizes.batch, sizes.heads, sizes.queries}, DType::Float32, q.device())};
  kernels::attention_forward(q.device(), sizes, rows_of(q), rows_of(k), rows_of(v), mutable_rows_of(r.out),
                             r.logsumexp.data<float>());
  return r;
}

// Writes dq, dk and dv (views of any layout with a contiguous head_dim).
void fused_backward(const Tensor& q, const Tensor& k, const Tensor& v, const ForwardResult& forward,
                    const Tensor& grad, const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  const kernels::AttentionSizes sizes = sizes_of(q, k);
  const Tensor dout = with_contiguous_head_dim(grad);
  const Tensor row_dots = empty(forward.logsumexp.shape(), DType::Float32, q.device());
  kernels::attention_backward(q.device(), sizes, rows_of(q), rows_of(k), rows_of(v), rows_of(forward.out),
                              rows_of(dout), forward.logsumexp.data<float>(), row_dots.data<float>(),
                              mutable_rows_of(dq), mutable_rows_of(dk), mutable_rows_of(dv));
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in) {
  check_heads("scaled_dot_product_attention", q_in, k_in, v_in);
  const Tensor q = with_contiguous_head_dim(q_in).detach(), k = with_contiguous_head_dim(k_in).detach(),
               v = with_contiguous_head_dim(v_in).detach();
  const ForwardResult forward = fused_forward(q, k, v);
  const ForwardResult saved{forward.out.detach(), forward.logsumexp};
  return record("scaled_dot_product_attention", forward.out, {q_in, k_in, v_in}, [q, k, v, saved](const Tensor& g) {
    const Shape& qs = q.shape();
    const int64_t keys = k.shape()[2];
    const Tensor dq = empty_heads(qs[0], qs[1], qs[2], qs[3], q.device()),
                 dk = empty_heads(qs[0], qs[1], keys, qs[3], q.device()),
                 dv = empty_heads(qs[0], qs[1], keys, qs[3], q.device());
    fused_backward(q, k, v, saved, g, dq, dk, dv);
    return std::vector<Tensor>{dq, dk, dv};
  });
}

Tensor unfused_scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  check_heads("unfused_scaled_dot_product_attention", q, k, v);
  const int64_t queries = q.shape()[2], keys = k.shape()[2];
  const float inverse_sqrt_dim = 1.0f / std::sqrt(static_cast<float>(q.shape()[3]));
  const Tensor scores = matmul(q, k.transpose(-1, -2), inverse_sqrt_dim);
  return matmul(softmax(causal_mask(scores, keys - queries)), v);
}

namespace {
// q, k and v of a [B, T, 3, heads, D] tensor, each [B, heads, T, D], as views (no autograd).
struct PackedHeads {
  Tensor q, k, v;
};
PackedHeads packed_heads(const Tensor& qkv, int64_t heads) {
  const int64_t batch = qkv.shape()[0], tokens = qkv.shape()[1], width = qkv.shape()[2], dim = width / 3;
  const Shape shape{batch, heads, tokens, dim / heads}, strides{tokens * width, dim / heads, width, 1};
  return {make_view(qkv, shape, strides, qkv.offset()), make_view(qkv, shape, strides, qkv.offset() + dim),
          make_view(qkv, shape, strides, qkv.offset() + 2 * dim)};
}
}  // namespace

Tensor causal_self_attention(const Tensor& qkv_in, int64_t heads) {
  detail::check_float_input("causal_self_attention", "qkv", qkv_in);
  if (qkv_in.dim() != 3 || heads <= 0 || qkv_in.shape()[2] % (3 * heads) != 0)
    throw std::invalid_argument("causal_self_attention: qkv must be [batch, tokens, 3 * heads * head_dim] with " +
                                std::to_string(heads) + " heads, got " + shape_str(qkv_in.shape()));
  const Tensor qkv = qkv_in.contiguous().detach();
  const int64_t batch = qkv.shape()[0], tokens = qkv.shape()[1], dim = qkv.shape()[2] / 3;
  const PackedHeads in = packed_heads(qkv, heads);
  const ForwardResult forward = fused_forward(in.q, in.k, in.v);
  const Tensor merged = forward.out.permute({0, 2, 1, 3}).view({batch, tokens, dim});
  const ForwardResult saved{forward.out.detach(), forward.logsumexp};
  return record("causal_self_attention", merged, {qkv_in}, [in, saved, heads](const Tensor& g) {
    const int64_t batch = g.shape()[0], tokens = g.shape()[1], dim = g.shape()[2];
    const Tensor dout = g.contiguous().view({batch, tokens, heads, dim / heads}).permute({0, 2, 1, 3});
    const Tensor dqkv = empty({batch, tokens, 3 * dim}, DType::Float32, g.device());
    const PackedHeads grads = packed_heads(dqkv, heads);
    fused_backward(in.q, in.k, in.v, saved, dout, grads.q, grads.k, grads.v);
    return std::vector<Tensor>{dqkv};
  });
}

}  // namespace minipipe
