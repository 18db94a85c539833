#pragma once
// A GPT's configuration as checkpoint metadata and back (train gpt writes it, sample and
// --resume rebuild the model from it).
#include "nn/transformer.h"
#include "training_state.h"

namespace minipipe::cli {

inline Metadata gpt_metadata(const nn::GPTConfig& c) {
  return {{"model", "gpt"}, {"vocabulary", std::to_string(c.vocabulary)}, {"context", std::to_string(c.context)},
          {"dim", std::to_string(c.dim)}, {"layers", std::to_string(c.layers)}, {"heads", std::to_string(c.heads)},
          {"dropout", std::to_string(c.dropout)}};
}

inline nn::GPTConfig gpt_config_from(const Metadata& m, const std::string& path) {
  if (required(m, "model", path) != "gpt")
    throw std::runtime_error("checkpoint '" + path + "' holds a " + m.at("model") + " model, not a gpt");
  nn::GPTConfig c;
  c.vocabulary = required_integer(m, "vocabulary", path, 1, 1 << 24);
  c.context = required_integer(m, "context", path, 1, 1 << 20);
  c.dim = required_integer(m, "dim", path, 1, 1 << 16);
  c.layers = required_integer(m, "layers", path, 1, 1 << 12);
  c.heads = required_integer(m, "heads", path, 1, c.dim);
  c.dropout = static_cast<float>(required_number(m, "dropout", path, 0.0, 0.99));
  return c;
}

}  // namespace minipipe::cli
