#include "training_state.h"

#include <stdexcept>

#include "nn/safetensors.h"

namespace minipipe::cli {

namespace {
const std::string kOptimizerPrefix = "optimizer.";
}

void save_training_state(const std::string& path, const nn::Module& model, const nn::Optimizer* optimizer,
                         const Metadata& metadata) {
  std::map<std::string, Tensor> tensors = model.state_dict();
  if (optimizer)
    for (const auto& [name, t] : optimizer->state_dict()) tensors[kOptimizerPrefix + name] = t;
  Metadata with_format = metadata;
  with_format["format"] = "minipipe-training-state-1";
  nn::save_safetensors(path, tensors, with_format);
}

Metadata load_training_state(const std::string& path, nn::Module& model, nn::Optimizer* optimizer) {
  nn::SafetensorsFile file = nn::load_safetensors(path);
  std::map<std::string, Tensor> model_state, optimizer_state;
  for (auto& [name, t] : file.tensors) {
    if (name.rfind(kOptimizerPrefix, 0) == 0) optimizer_state[name.substr(kOptimizerPrefix.size())] = t;
    else model_state[name] = t;
  }
  try {
    model.load_state_dict(model_state);
    if (optimizer) optimizer->load_state_dict(optimizer_state);
  } catch (const std::exception& error) {
    throw std::runtime_error("checkpoint '" + path + "' does not fit this model: " + error.what());
  }
  return file.metadata;
}

Metadata read_metadata(const std::string& path) { return nn::load_safetensors(path).metadata; }

std::string required(const Metadata& metadata, const std::string& key, const std::string& path) {
  auto it = metadata.find(key);
  if (it == metadata.end())
    throw std::runtime_error("checkpoint '" + path + "' lacks metadata '" + key + "' (not written by minipipe train?)");
  return it->second;
}

}  // namespace minipipe::cli
