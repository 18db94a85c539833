#include "autograd/attention.h"

#include <cmath>
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

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  for (auto [name, t] : {std::pair{"q", q}, {"k", k}, {"v", v}}) {
    detail::check_float_input("scaled_dot_product_attention", name, t);
    if (t.dim() != 4)
      throw std::invalid_argument(std::string("scaled_dot_product_attention: ") + name +
                                  " must be [batch, heads, tokens, head_dim], got " + shape_str(t.shape()));
  }
  const bool same_batch = q.shape()[0] == k.shape()[0] && q.shape()[1] == k.shape()[1] && q.shape()[3] == k.shape()[3];
  if (!same_batch || k.shape() != v.shape() || k.shape()[2] < q.shape()[2])
    throw std::invalid_argument("scaled_dot_product_attention: q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) +
                                ", v " + shape_str(v.shape()) + " do not fit: k and v must be equal, share batch, "
                                "heads and head_dim with q, and have at least as many tokens");
  const int64_t queries = q.shape()[2], keys = k.shape()[2];
  const float inverse_sqrt_dim = 1.0f / std::sqrt(static_cast<float>(q.shape()[3]));
  const Tensor scores = matmul(q, k.transpose(-1, -2), inverse_sqrt_dim);
  return matmul(softmax(causal_mask(scores, keys - queries)), v);
}

}  // namespace minipipe
