#include "training_state.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <stdexcept>

#include "nn/json_reader.h"
#include "nn/safetensors.h"

namespace minipipe::cli {

namespace {
const std::string kOptimizerPrefix = "optimizer.";

// "step@<its first parameter's name>": one optimizer's own step count.
std::string step_key(const nn::Optimizer& optimizer) {
  const nn::NamedTensors& parameters = optimizer.named_parameters();
  return "step@" + (parameters.empty() ? std::string() : parameters.front().first);
}
}  // namespace

void save_training_state(const std::string& path, const nn::Module& model,
                         const std::vector<nn::Optimizer*>& optimizers, const Metadata& metadata) {
  std::map<std::string, Tensor> tensors = model.state_dict();
  for (const nn::Optimizer* optimizer : optimizers) {
    // Per-stage optimizers hold their own parameters' state. Their step counts differ when
    // stages are replicated (a replicated stage updates once per round), so each is also kept
    // under its first parameter's name; "step" alone is what older checkpoints have.
    for (const auto& [name, t] : optimizer->state_dict()) {
      tensors[kOptimizerPrefix + name] = t;
      if (name == "step" && optimizers.size() > 1) tensors[kOptimizerPrefix + step_key(*optimizer)] = t;
    }
  }
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
    std::set<std::string> taken{"step"};
    for (nn::Optimizer* optimizer : optimizers) {
      // "<parameter name>.<state name>" for this optimizer's parameters, and the step count.
      std::set<std::string> parameters;
      for (const auto& [name, p] : optimizer->named_parameters()) parameters.insert(name);
      std::map<std::string, Tensor> own;
      for (const auto& [key, t] : optimizer_state)
        if (key == "step" || parameters.count(key.substr(0, key.rfind('.')))) own[key] = t, taken.insert(key);
      if (auto own_step = optimizer_state.find(step_key(*optimizer)); own_step != optimizer_state.end())
        own["step"] = own_step->second, taken.insert(own_step->first);
      optimizer->load_state_dict(own);
    }
    for (const auto& [key, t] : optimizer_state)
      if (!optimizers.empty() && !taken.count(key))
        throw std::invalid_argument("optimizer state 'optimizer." + key + "' belongs to no parameter of this model");
  } catch (const std::exception& error) {
    throw std::runtime_error("checkpoint '" + path + "' does not fit this run: " + error.what() +
                             " (resume from a file that `minipipe train --save` wrote for the same model)");
  }
  return file.metadata;
}

std::string stale_temporary_note(const std::string& path) {
  std::error_code ignored;
  if (path.empty() || !std::filesystem::exists(path + ".tmp", ignored)) return "";
  return "note: '" + path + ".tmp' is left from an interrupted save and is not used; the next --save to '" + path +
         "' replaces it (or delete it)";
}

Metadata read_metadata(const std::string& path) { return nn::load_safetensors(path).metadata; }

}  // namespace minipipe::cli
