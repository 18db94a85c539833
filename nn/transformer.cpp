#include "nn/transformer.h"

#include <cmath>
#include <stdexcept>
#include <tuple>

#include "autograd/attention.h"
#include "autograd/elementwise.h"
#include "autograd/shape_ops.h"
#include "nn/forward_context.h"
#include "nn/key_value_cache.h"
#include "tensor/factories.h"

namespace minipipe::nn {

namespace {
// Dropout ids: the embedding takes 0, block b takes 1 + 2b (attention) and 2 + 2b (MLP).
uint64_t attention_dropout_id(uint64_t block) { return 1 + 2 * block; }
uint64_t mlp_dropout_id(uint64_t block) { return 2 + 2 * block; }
}  // namespace

CausalSelfAttention::CausalSelfAttention(int64_t dim, int64_t heads_, float p, uint64_t dropout_id, Generator& g)
    : heads(heads_) {
  if (heads <= 0 || dim % heads != 0)
    throw std::invalid_argument("CausalSelfAttention: dim " + std::to_string(dim) + " is not divisible by " +
                                std::to_string(heads) + " heads");
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim, g));
  projection = register_module("projection", std::make_shared<Linear>(dim, dim, g));
  dropout = register_module("dropout", std::make_shared<Dropout>(p, dropout_id));
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
  if (x.dim() != 3) throw std::invalid_argument("CausalSelfAttention: input must be [batch, tokens, dim], got " + shape_str(x.shape()));
  const int64_t batch = x.shape()[0], tokens = x.shape()[1], dim = x.shape()[2], head_dim = dim / heads;
  const Tensor qkv_out = (*qkv)(x);  // [B, T, 3, heads, head_dim]
  KeyValueCache* cache = KeyValueCache::current();
  if (!cache) return (*dropout)((*projection)(causal_self_attention(qkv_out, heads)));
  // A TeraPipe slice or a generation step: attend over the cached keys and values as well.
  const Tensor split_qkv = qkv_out.reshape({batch, tokens, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
  const Tensor q = split_qkv.narrow(0, 0, 1).squeeze(0);
  Tensor k = split_qkv.narrow(0, 1, 1).squeeze(0), v = split_qkv.narrow(0, 2, 1).squeeze(0);
  std::tie(k, v) = cache->extend(this, k, v);
  const Tensor attended = scaled_dot_product_attention(q, k, v);  // [B, heads, T, head_dim]
  const Tensor merged = attended.permute({0, 2, 1, 3}).reshape({batch, tokens, dim});
  return (*dropout)((*projection)(merged));
}

MLP::MLP(int64_t dim, float p, uint64_t dropout_id, Generator& g) {
  expand = register_module("expand", std::make_shared<Linear>(dim, 4 * dim, g));
  project = register_module("project", std::make_shared<Linear>(4 * dim, dim, g));
  dropout = register_module("dropout", std::make_shared<Dropout>(p, dropout_id));
}

Tensor MLP::forward(const Tensor& x) { return (*dropout)((*project)(gelu((*expand)(x)))); }

TransformerBlock::TransformerBlock(int64_t dim, int64_t heads, float p, uint64_t block_index, Generator& g) {
  ln1 = register_module("ln1", std::make_shared<LayerNorm>(dim));
  attention = register_module("attention", std::make_shared<CausalSelfAttention>(dim, heads, p, attention_dropout_id(block_index), g));
  ln2 = register_module("ln2", std::make_shared<LayerNorm>(dim));
  mlp = register_module("mlp", std::make_shared<MLP>(dim, p, mlp_dropout_id(block_index), g));
}

Tensor TransformerBlock::forward(const Tensor& x) {
  const Tensor h = add(x, (*attention)((*ln1)(x)));
  return add(h, (*mlp)((*ln2)(h)));
}

TokenAndPositionEmbedding::TokenAndPositionEmbedding(int64_t vocabulary, int64_t context, int64_t dim, float p, Generator& g) {
  tokens = register_module("tokens", std::make_shared<Embedding>(vocabulary, dim, g, 0.02f));
  positions = register_module("positions", std::make_shared<Embedding>(context, dim, g, 0.02f));
  dropout = register_module("dropout", std::make_shared<Dropout>(p, 0));
}

Tensor TokenAndPositionEmbedding::forward(const Tensor& ids) {
  if (ids.dim() != 2) throw std::invalid_argument("GPT: token ids must be [batch, tokens], got " + shape_str(ids.shape()));
  // A token slice starts at forward_context().token_offset and keeps its absolute positions.
  const int64_t first = forward_context().token_offset, tokens_in = ids.shape()[1], context = positions->weight.shape()[0];
  if (first + tokens_in > context)
    throw std::invalid_argument("GPT: " + std::to_string(first + tokens_in) + " tokens exceed the context of " +
                                std::to_string(context) + " (build the model with a larger context)");
  const Tensor position_ids = arange_int(tokens_in, ids.device(), first);
  return (*dropout)(add((*tokens)(ids), (*positions)(position_ids)));
}

LanguageModelHead::LanguageModelHead(int64_t dim, int64_t vocabulary, Generator& g, Tensor tied_weight) {
  norm = register_module("norm", std::make_shared<LayerNorm>(dim));
  if (tied_weight.defined() && tied_weight.shape() != Shape{vocabulary, dim})
    throw std::invalid_argument("LanguageModelHead: a tied weight must be [" + std::to_string(vocabulary) + ", " +
                                std::to_string(dim) + "] like the token embedding, got " + shape_str(tied_weight.shape()));
  logits = register_module("logits", tied_weight.defined() ? std::make_shared<Linear>(tied_weight)
                                                           : std::make_shared<Linear>(dim, vocabulary, g, false));
}

Tensor LanguageModelHead::forward(const Tensor& x) { return (*logits)((*norm)(x)); }

namespace {
// GPT-2's initialisation, redrawn in place over what the constructors drew: weights N(0, 0.02),
// the residual projections N(0, 0.02 / sqrt(2 layers)), biases 0; layer norms keep 1 and 0,
// and `keep` (a tied weight, initialised by the embedding) is left alone.
void initialise_like_gpt2(Module& layer, Generator& g, int64_t layers, const Tensor& keep = Tensor()) {
  const float residual_std = 0.02f / std::sqrt(2.0f * static_cast<float>(layers));
  for (auto& [name, t] : layer.named_parameters()) {
    const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    const bool is_norm = name.find("ln") != std::string::npos || name.find("norm") != std::string::npos;
    if (is_norm || (keep.defined() && t.impl() == keep.impl())) continue;
    const bool residual = name.find("projection.weight") != std::string::npos || name.find("project.weight") != std::string::npos;
    copy_(t, is_bias ? zeros(t.shape()) : randn(t.shape(), g, 0.0f, residual ? residual_std : 0.02f));
  }
}

std::shared_ptr<TokenAndPositionEmbedding> make_embedding(const GPTConfig& c) {
  Generator g = layer_generator(c.seed, 0);
  return std::make_shared<TokenAndPositionEmbedding>(c.vocabulary, c.context, c.dim, c.dropout, g);
}

// The head's tied weight: the embedding's own tensor when this process holds the embedding,
// else a tensor of the same values (another process's embedding, drawn from its streams).
Tensor token_embedding_weight(const GPTConfig& c, const Sequential& earlier) {
  if (auto embedding = std::dynamic_pointer_cast<TokenAndPositionEmbedding>(earlier[0])) return embedding->tokens->weight;
  return make_embedding(c)->tokens->weight;
}
}  // namespace

ModelRecipe gpt_recipe(const GPTConfig& c) {
  if (c.vocabulary <= 0 || c.context <= 0 || c.dim <= 0 || c.layers <= 0)
    throw std::invalid_argument("make_gpt: vocabulary, context, dim and layers must be positive");
  ModelRecipe recipe;
  recipe.names.push_back("embedding");
  for (int64_t b = 0; b < c.layers; ++b) recipe.names.push_back("block" + std::to_string(b));
  recipe.names.push_back("head");
  if (c.tie_embeddings) recipe.ties.push_back({recipe.names.size() - 1, "head.logits.weight", 0, "embedding.tokens.weight"});
  recipe.build_layer = [c](size_t index, const Sequential& earlier) -> ModulePtr {
    if (index == 0) return make_embedding(c);
    Generator g = layer_generator(c.seed, index);
    const auto block = static_cast<int64_t>(index) - 1;
    if (block < c.layers) {
      auto layer = std::make_shared<TransformerBlock>(c.dim, c.heads, c.dropout, block, g);
      initialise_like_gpt2(*layer, g, c.layers);
      return layer;
    }
    const Tensor tied = c.tie_embeddings ? token_embedding_weight(c, earlier) : Tensor();
    auto head = std::make_shared<LanguageModelHead>(c.dim, c.vocabulary, g, tied);
    initialise_like_gpt2(*head, g, c.layers, tied);
    return head;
  };
  return recipe;
}

std::shared_ptr<Sequential> make_gpt(const GPTConfig& config) { return gpt_recipe(config).build(); }

}  // namespace minipipe::nn
