#include "training_state.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>

#include "nn/checkpoint_files.h"
#include "nn/json_reader.h"
#include "nn/model_recipe.h"
#include "nn/safetensors.h"

namespace minipipe::cli {

namespace {
const std::string kOptimizerPrefix = "optimizer.";

// "step@<its first parameter's name>": one optimizer's own step count.
std::string step_key(const nn::Optimizer& optimizer) {
  const nn::NamedTensors& parameters = optimizer.named_parameters();
  return "step@" + (parameters.empty() ? std::string() : parameters.front().first);
}

// The tensors of a training state: the model's and the optimizers' (one step count is kept
// per file, or per optimizer where they differ).
std::map<std::string, Tensor> training_tensors(const nn::Module& model, const std::vector<nn::Optimizer*>& optimizers) {
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
  return tensors;
}

std::string joined(const std::map<std::string, Tensor>& tensors) {
  std::string names;
  for (const auto& [name, t] : tensors) names += name + "\n";
  return names;
}

void save_shards(const std::string& path, std::map<std::string, Tensor> tensors, const Metadata& metadata,
                 const pipeline::ProcessGroup& group) {
  // A name for this save's shards that every rank agrees on (rank 0's clock; 48 bits travel
  // exactly through the sum of doubles).
  const uint64_t mine = group.rank() == 0 ? static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count() ^
                                                                  std::chrono::system_clock::now().time_since_epoch().count()) &
                                                ((uint64_t{1} << 48) - 1)
                                          : 0;
  const auto save_id = static_cast<uint64_t>(group.sum(static_cast<double>(mine)));
  const bool writes = group.replica() == 0;  // the other replicas hold the same values
  if (group.rank() != 0) tensors.erase(kOptimizerPrefix + "step");  // rank 0's is every rank's
  const std::string shard = nn::shard_file_name(path, save_id, group.stage(), group.stages());
  if (writes) nn::save_safetensors((std::filesystem::path(path).parent_path() / shard).string(), tensors, metadata);
  // Gathering the names waits for every shard to be written; then rank 0 makes them the checkpoint.
  const std::vector<std::string> names = group.gather_to_rank_zero(writes ? joined(tensors) : "");
  if (group.rank() != 0) return;
  std::map<std::string, std::string> weight_map;
  for (int r = 0; r < group.size(); ++r) {
    std::stringstream list(names[r]);
    for (std::string name; std::getline(list, name);)
      weight_map[name] = nn::shard_file_name(path, save_id, r % group.stages(), group.stages());
  }
  nn::write_checkpoint_index(path, metadata, weight_map);
}

bool holds_every_layer(const nn::Module& model) {
  for (const auto& [name, layer] : model.children())
    if (nn::is_absent(*layer)) return false;
  return true;
}
}  // namespace

void save_training_state(const std::string& path, const nn::Module& model, const std::vector<nn::Optimizer*>& optimizers,
                         const Metadata& metadata, const pipeline::ProcessGroup* group,
                         const std::map<std::string, std::string>& tied_copies) {
  Metadata with_format = metadata;
  with_format["format"] = "minipipe-training-state-1";
  if (group) {
    std::map<std::string, Tensor> tensors = training_tensors(model, optimizers);
    for (const auto& [copy, saved_as] : tied_copies)
      for (auto it = tensors.begin(); it != tensors.end();)
        it = it->first == copy || it->first.rfind(kOptimizerPrefix + copy + ".", 0) == 0 ? tensors.erase(it) : std::next(it);
    return save_shards(path, std::move(tensors), with_format, *group);
  }
  nn::save_safetensors(path, training_tensors(model, optimizers), with_format);
  nn::remove_sharded_checkpoint(path);
}

Metadata load_training_state(const std::string& path, nn::Module& model, const std::vector<nn::Optimizer*>& optimizers,
                             const std::map<std::string, std::string>& tied_copies) {
  // A model of some layers reads their tensors and their optimizer state, and nothing else.
  std::function<bool(const std::string&)> held_here;
  if (!holds_every_layer(model)) {
    std::set<std::string> names;
    for (const auto& [name, t] : model.state_dict()) names.insert(tied_copies.count(name) ? tied_copies.at(name) : name);
    held_here = [names](const std::string& key) {
      const bool optimizer = key.rfind(kOptimizerPrefix, 0) == 0;
      const std::string rest = optimizer ? key.substr(kOptimizerPrefix.size()) : key;
      if (!optimizer) return names.count(rest) > 0;
      if (rest == "step") return true;
      if (rest.rfind("step@", 0) == 0) return names.count(rest.substr(5)) > 0;
      return names.count(rest.substr(0, rest.rfind('.'))) > 0;
    };
  }
  nn::SafetensorsFile file = nn::load_checkpoint(path, held_here);
  for (const auto& [copy, saved_as] : tied_copies)  // the saved weight's values (and state) become the copy's
    for (const std::string& prefix : {std::string(), kOptimizerPrefix})
      for (auto it = file.tensors.lower_bound(prefix + saved_as); it != file.tensors.end() && it->first.rfind(prefix + saved_as, 0) == 0;) {
        const std::string rest = it->first.substr(prefix.size() + saved_as.size());
        if (!rest.empty() && rest[0] != '.') { ++it; continue; }
        file.tensors[prefix + copy + rest] = it->second;
        it = file.tensors.erase(it);
      }
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

}  // namespace minipipe::cli
