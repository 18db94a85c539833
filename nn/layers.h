#pragma once
// Basic layers. Initialisation draws from the Generator passed in, so a seed fixes a model.
#include <cstdint>

#include "nn/module.h"
#include "tensor/random.h"

namespace minipipe::nn {

// y = x W^T + b with W [out, in] (PyTorch's layout, so checkpoints load there unchanged).
// Default init is PyTorch's: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, Generator& generator, bool bias = true);
  // On existing tensors: weight [out, in] and an optional bias [out]. A weight that another
  // layer holds too is tied to it (one tensor, one gradient).
  explicit Linear(Tensor weight, Tensor bias = Tensor());
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Linear"; }
  Tensor weight, bias;
};

// Token ids (int32, any shape) -> vectors [..., dim]. Init N(0, stddev).
class Embedding : public Module {
 public:
  Embedding(int64_t count, int64_t dim, Generator& generator, float stddev = 1.0f);
  Tensor forward(const Tensor& ids) override;
  std::string type_name() const override { return "Embedding"; }
  Tensor weight;
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, float eps = 1e-5f);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LayerNorm"; }
  Tensor weight, bias;
  float eps;
};

// Inverted dropout. `layer_id` must be unique within a model: with the forward context's
// seed and step it keys the mask (see forward_context.h).
class Dropout : public Module {
 public:
  Dropout(float p, uint64_t layer_id);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Dropout"; }
  float p;
  uint64_t layer_id;
};

enum class ActivationKind { ReLU, GELU, Tanh };
class Activation : public Module {
 public:
  explicit Activation(ActivationKind kind) : kind(kind) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override;
  ActivationKind kind;
};

// [N, ...] -> [N, prod(...)]
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Flatten"; }
};

}  // namespace minipipe::nn
