#pragma once
// GPT-style decoder blocks (Radford et al. 2019: pre-LayerNorm, GELU MLP of width 4C),
// and a GPT assembled as a Sequential [embedding, block0, ..., head] so that a pipeline
// can cut it between blocks.
#include <memory>

#include "nn/layers.h"
#include "nn/model_recipe.h"
#include "nn/sequential.h"

namespace minipipe::nn {

// Causal multi-head self-attention over x [B, T, C]. Inside a KeyValueCache::Scope, x is a
// token slice and attends over the keys and values of the earlier slices as well (TeraPipe).
class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(int64_t dim, int64_t heads, float dropout, uint64_t dropout_id, Generator& generator);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "CausalSelfAttention"; }

  int64_t heads;
  std::shared_ptr<Linear> qkv, projection;
  std::shared_ptr<Dropout> dropout;
};

class MLP : public Module {
 public:
  MLP(int64_t dim, float dropout, uint64_t dropout_id, Generator& generator);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MLP"; }
  std::shared_ptr<Linear> expand, project;
  std::shared_ptr<Dropout> dropout;
};

// x + attention(ln1(x)), then x + mlp(ln2(x)).
class TransformerBlock : public Module {
 public:
  TransformerBlock(int64_t dim, int64_t heads, float dropout, uint64_t block_index, Generator& generator);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "TransformerBlock"; }
  std::shared_ptr<LayerNorm> ln1, ln2;
  std::shared_ptr<CausalSelfAttention> attention;
  std::shared_ptr<MLP> mlp;
};

// Token ids [B, T] (int32) -> token embedding + position embedding, then dropout.
class TokenAndPositionEmbedding : public Module {
 public:
  TokenAndPositionEmbedding(int64_t vocabulary, int64_t context, int64_t dim, float dropout, Generator& generator);
  Tensor forward(const Tensor& ids) override;
  std::string type_name() const override { return "TokenAndPositionEmbedding"; }
  std::shared_ptr<Embedding> tokens, positions;
  std::shared_ptr<Dropout> dropout;
};

// Final LayerNorm and the projection to vocabulary logits (no bias). Given the token
// embedding's weight [vocabulary, dim], the projection uses it (tied weights, as GPT-2
// does); a pipeline then sums the gradients the two stages give it (pipeline/executor.h).
class LanguageModelHead : public Module {
 public:
  LanguageModelHead(int64_t dim, int64_t vocabulary, Generator& generator, Tensor tied_weight = Tensor());
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LanguageModelHead"; }
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<Linear> logits;
};

struct GPTConfig {
  int64_t vocabulary = 256;  // bytes
  int64_t context = 128;
  int64_t dim = 128;
  int64_t layers = 4;
  int64_t heads = 4;
  float dropout = 0.1f;
  uint64_t seed = 0;
  bool tie_embeddings = false;  // the head's projection is the token embedding's weight
};

// embedding, block0 .. block{layers-1}, head. Weights N(0, 0.02), the residual projections
// N(0, 0.02 / sqrt(2 layers)), biases 0 (GPT-2), each layer from its own random streams
// (nn/model_recipe.h), so a pipeline's process can build its stages alone.
ModelRecipe gpt_recipe(const GPTConfig& config);
std::shared_ptr<Sequential> make_gpt(const GPTConfig& config);  // gpt_recipe(config).build()

}  // namespace minipipe::nn
