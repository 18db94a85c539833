#include "nn/layers.h"

#include <cmath>
#include <stdexcept>

#include "autograd/elementwise.h"
#include "autograd/embedding.h"
#include "autograd/matmul.h"
#include "autograd/normalization.h"
#include "autograd/random_ops.h"
#include "nn/forward_context.h"
#include "tensor/factories.h"

namespace minipipe::nn {

Linear::Linear(int64_t in_features, int64_t out_features, Generator& generator, bool with_bias) {
  if (in_features <= 0 || out_features <= 0)
    throw std::invalid_argument("Linear: sizes must be positive, got " + std::to_string(in_features) + " -> " +
                                std::to_string(out_features));
  const float bound = 1.0f / std::sqrt(static_cast<float>(in_features));
  weight = register_parameter("weight", rand({out_features, in_features}, generator, -bound, bound));
  if (with_bias) bias = register_parameter("bias", rand({out_features}, generator, -bound, bound));
}

Linear::Linear(Tensor weight_, Tensor bias_) {
  if (!weight_.defined() || weight_.dim() != 2 || weight_.dtype() != DType::Float32)
    throw std::invalid_argument("Linear: the weight must be a float32 [out, in] tensor" +
                                (weight_.defined() ? ", got " + shape_str(weight_.shape()) : std::string()));
  if (bias_.defined() && bias_.shape() != Shape{weight_.shape()[0]})
    throw std::invalid_argument("Linear: the bias must be [" + std::to_string(weight_.shape()[0]) + "], got " +
                                shape_str(bias_.shape()));
  weight = register_parameter("weight", weight_);
  if (bias_.defined()) bias = register_parameter("bias", bias_);
}

Tensor Linear::forward(const Tensor& x) {
  if (x.dim() < 1 || x.shape().back() != weight.shape()[1])
    throw std::invalid_argument("Linear: input " + shape_str(x.shape()) + " must end in " +
                                std::to_string(weight.shape()[1]) + " features");
  return linear(x, weight, bias);
}

Embedding::Embedding(int64_t count, int64_t dim, Generator& generator, float stddev) {
  weight = register_parameter("weight", randn({count, dim}, generator, 0.0f, stddev));
}

Tensor Embedding::forward(const Tensor& ids) { return embedding(weight, ids); }

LayerNorm::LayerNorm(int64_t dim, float eps_) : eps(eps_) {
  weight = register_parameter("weight", ones({dim}));
  bias = register_parameter("bias", zeros({dim}));
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, weight, bias, eps); }

Dropout::Dropout(float p_, uint64_t layer_id_) : p(p_), layer_id(layer_id_) {
  if (!(p >= 0.0f && p < 1.0f)) throw std::invalid_argument("Dropout: p must be in [0, 1), got " + std::to_string(p));
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p == 0.0f) return x;
  const ForwardContext& context = forward_context();
  // One stream per (step, layer); elements numbered from the batch's first sample.
  const RandomKey key{context.seed, (context.step << 20) ^ layer_id};
  const int64_t per_sample = x.dim() > 0 && x.shape()[0] > 0 ? x.numel() / x.shape()[0] : x.numel();
  if (context.sequence_tokens == 0) return dropout(x, p, true, key, context.sample_offset * per_sample);
  // A token slice [B, L, ...] of sequences of sequence_tokens: number each element by its
  // place in the whole sequence, so that the mask is the unsliced one.
  if (x.dim() < 2 || x.shape()[1] == 0 || context.token_offset + x.shape()[1] > context.sequence_tokens)
    throw std::invalid_argument("Dropout: a token slice must be [batch, tokens, ...] within the " +
                                std::to_string(context.sequence_tokens) + "-token sequence, got " + shape_str(x.shape()) +
                                " at token " + std::to_string(context.token_offset));
  const int64_t per_token = per_sample / x.shape()[1], row_stride = context.sequence_tokens * per_token;
  return dropout(x, p, true, key, context.sample_offset * row_stride + context.token_offset * per_token, row_stride);
}

Tensor Activation::forward(const Tensor& x) {
  switch (kind) {
    case ActivationKind::ReLU: return relu(x);
    case ActivationKind::GELU: return gelu(x);
    case ActivationKind::Tanh: return tanh(x);
  }
  return x;
}

std::string Activation::type_name() const {
  switch (kind) {
    case ActivationKind::ReLU: return "ReLU";
    case ActivationKind::GELU: return "GELU";
    case ActivationKind::Tanh: return "Tanh";
  }
  return "Activation";
}

Tensor Flatten::forward(const Tensor& x) {
  if (x.dim() < 1) throw std::invalid_argument("Flatten: needs a batch dim, got a scalar");
  return x.reshape({x.shape()[0], -1});
}

}  // namespace minipipe::nn
