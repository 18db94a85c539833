#include "training_state.h"

#include <set>
#include <stdexcept>

#include "nn/safetensors.h"

namespace minipipe::cli {

namespace {
const std::string kOptimizerPrefix = "optimizer.";
}

void save_training_state(const std::string& path, const nn::Module& model,
                         const std::vector<nn::Optimizer*>& optimizers, const Metadata& metadata) {
  std::map<std::string, Tensor> tensors = model.state_dict();
  for (const nn::Optimizer* optimizer : optimizers)  // per-stage optimizers have taken the same steps
    for (const auto& [name, t] : optimizer->state_dict()) tensors[kOptimizerPrefix + name] = t;
  Metadata with_format = metadata;
  with_format["format"] = "minipipe-training-state-1";
  nn::save_safetensors(path, tensors, with_format);
}

Metadata load_training_state(const std::string& path, nn::Module& model, const std::vector<nn::Optimizer*>& optimizers) {
  nn::SafetensorsFile file = nn::load_safetensors(path);
  std::map<std::string, Tensor> model_state, optimizer_state;
  for (auto& [name, t] : file.tensors) {
    if (name.rfind(kOptimizerPrefix, 0) == 0) optimizer_state[name.substr(kOptimizerPrefix.size())] = t;
    else model_state[name] = t;
  }
  try {
    model.load_state_dict(model_state);
    for (nn::Optimizer* optimizer : optimizers) {
      // "<parameter name>.<state name>" for this optimizer's parameters, and the step count.
      std::set<std::string> parameters;
      for (const auto& [name, p] : optimizer->named_parameters()) parameters.insert(name);
      std::map<std::string, Tensor> own;
      for (const auto& [key, t] : optimizer_state)
        if (key == "step" || parameters.count(key.substr(0, key.rfind('.')))) own[key] = t;
      optimizer->load_state_dict(own);
    }
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
