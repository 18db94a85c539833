#include "nn/skip.h"

#include <stdexcept>
#include <type_traits>

#include "autograd/elementwise.h"
#include "nn/model_recipe.h"

namespace minipipe::nn {

namespace {

thread_local SkipStore default_store;
thread_local SkipStore* current_store = nullptr;

// An absent layer (held by another process) names what the layer it stands for stashes or pops.
template <class Layer>
void collect_names(const Module& module, std::vector<std::string>& names) {
  if (auto* layer = dynamic_cast<const Layer*>(&module)) names.push_back(layer->name);
  if (auto* absent = dynamic_cast<const AbsentLayer*>(&module)) {
    const auto& held = std::is_same_v<Layer, SkipStash> ? absent->skips_stashed() : absent->skips_popped();
    names.insert(names.end(), held.begin(), held.end());
  }
  for (const auto& [child_name, child] : module.children()) collect_names<Layer>(*child, names);
}

}  // namespace

void SkipStore::stash(const std::string& name, const Tensor& value) {
  if (!tensors_.emplace(name, value).second)
    throw std::invalid_argument("SkipStash '" + name + "': a tensor of that name is stashed already and not popped; give "
                                "each skip connection its own name");
}

Tensor SkipStore::pop(const std::string& name) {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw std::invalid_argument("SkipPop '" + name + "': nothing is stashed under that name; put a SkipStash '" + name +
                                "' before it in the model");
  Tensor value = std::move(it->second);
  tensors_.erase(it);
  return value;
}

SkipStore::Scope::Scope(SkipStore& store) : previous_(current_store) { current_store = &store; }
SkipStore::Scope::~Scope() { current_store = previous_; }

SkipStore& skip_store() { return current_store ? *current_store : default_store; }

SkipStash::SkipStash(std::string name_) : name(std::move(name_)) {
  if (name.empty()) throw std::invalid_argument("SkipStash: give the skip connection a name");
}

Tensor SkipStash::forward(const Tensor& x) {
  skip_store().stash(name, x);
  return x;
}

SkipPop::SkipPop(std::string name_, Combine combine) : name(std::move(name_)), combine_(std::move(combine)) {
  if (name.empty()) throw std::invalid_argument("SkipPop: give the skip connection a name");
}

Tensor SkipPop::forward(const Tensor& x) {
  const Tensor skipped = skip_store().pop(name).to(x.device());
  return combine_ ? combine_(x, skipped) : add(x, skipped);
}

std::vector<std::string> skips_stashed(const Module& module) {
  std::vector<std::string> names;
  collect_names<SkipStash>(module, names);
  return names;
}

std::vector<std::string> skips_popped(const Module& module) {
  std::vector<std::string> names;
  collect_names<SkipPop>(module, names);
  return names;
}

}  // namespace minipipe::nn
