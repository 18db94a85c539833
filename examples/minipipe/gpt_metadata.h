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
  c.vocabulary = std::stoll(required(m, "vocabulary", path));
  c.context = std::stoll(required(m, "context", path));
  c.dim = std::stoll(required(m, "dim", path));
  c.layers = std::stoll(required(m, "layers", path));
  c.heads = std::stoll(required(m, "heads", path));
  c.dropout = std::stof(required(m, "dropout", path));
  return c;
}

}  // namespace minipipe::cli
