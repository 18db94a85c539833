#include "nn/module.h"

#include <set>
#include <stdexcept>

#include "autograd/node.h"
#include "tensor/factories.h"

namespace minipipe::nn {

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  if (!value.is_leaf()) value = value.detach();
  value.set_requires_grad(true);
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  buffers_.emplace_back(name, value);
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  if (!module) throw std::invalid_argument("register_module: '" + name + "' is null");
  for (const auto& [existing, child] : children_)
    if (existing == name) throw std::invalid_argument("register_module: a submodule is already named '" + name + "'");
  children_.emplace_back(name, std::move(module));
}

void Module::replace_child(size_t index, std::shared_ptr<Module> module) {
  if (!module) throw std::invalid_argument("replace_child: the module is null");
  children_.at(index).second = std::move(module);
}

void Module::collect(const std::string& prefix, bool buffers, NamedTensors& out) const {
  for (const auto& [name, t] : buffers ? buffers_ : parameters_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", buffers, out);
}

namespace {

// A tensor registered twice (tied weights: a language model's head sharing the token
// embedding) is listed once, under the name it was first reached by, so that optimizers,
// norms and checkpoints see it once.
NamedTensors without_repeats(NamedTensors all) {
  std::set<const TensorImpl*> seen;
  NamedTensors out;
  for (auto& entry : all)
    if (seen.insert(entry.second.impl()).second) out.push_back(std::move(entry));
  return out;
}

}  // namespace

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", false, out);
  return without_repeats(std::move(out));
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", true, out);
  return without_repeats(std::move(out));
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t total = 0;
  for (const Tensor& t : parameters()) total += t.numel();
  return total;
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> state;
  for (auto& [name, t] : named_parameters()) state[name] = t;
  for (auto& [name, t] : named_buffers()) state[name] = t;
  return state;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state) {
  std::set<std::string> expected;
  NamedTensors entries = named_parameters();
  for (auto& entry : named_buffers()) entries.push_back(entry);
  for (const auto& [name, target] : entries) {
    expected.insert(name);
    auto it = state.find(name);
    if (it == state.end()) throw std::invalid_argument("load_state_dict: missing entry '" + name + "'");
    if (it->second.shape() != target.shape())
      throw std::invalid_argument("load_state_dict: '" + name + "' has shape " + shape_str(it->second.shape()) +
                                  " but the model expects " + shape_str(target.shape()));
    NoGradGuard no_grad;
    copy_(target, it->second.to(target.device()));
  }
  for (const auto& [name, value] : state)
    if (!expected.count(name)) throw std::invalid_argument("load_state_dict: unexpected entry '" + name + "' (not in this model)");
}

void Module::train(bool training) {
  training_ = training;
  for (auto& [name, child] : children_) child->train(training);
}

void Module::to(Device device) {
  NamedTensors entries = named_parameters();
  for (auto& entry : named_buffers()) entries.push_back(entry);
  for (auto& [name, t] : entries) {
    if (t.device() == device) continue;
    const Tensor moved = t.detach().to(device);
    TensorImpl* impl = t.impl();
    impl->storage = moved.impl()->storage;
    impl->strides = moved.strides();
    impl->offset = moved.offset();
    impl->grad.reset();
  }
}

void Module::zero_grad() {
  for (const Tensor& t : parameters()) t.zero_grad();
}

}  // namespace minipipe::nn
