#include "nn/sequential.h"

#include <stdexcept>

namespace minipipe::nn {

Sequential::Sequential(std::initializer_list<ModulePtr> modules) {
  for (const ModulePtr& m : modules) add(m);
}

Sequential& Sequential::add(ModulePtr module, std::string name) {
  register_module(name.empty() ? std::to_string(size()) : std::move(name), std::move(module));
  return *this;
}

const ModulePtr& Sequential::operator[](size_t index) const {
  if (index >= size())
    throw std::out_of_range("Sequential: index " + std::to_string(index) + " is past its " + std::to_string(size()) + " children");
  return children()[index].second;
}

const std::string& Sequential::name_of(size_t index) const {
  (void)(*this)[index];
  return children()[index].first;
}

ModulePtr Sequential::at(const std::string& name) const {
  for (const auto& [child_name, child] : children())
    if (child_name == name) return child;
  throw std::out_of_range("Sequential: no child named '" + name + "'");
}

Tensor Sequential::forward(const Tensor& input) {
  Tensor x = input;
  for (const auto& [name, child] : children()) x = child->forward(x);
  return x;
}

}  // namespace minipipe::nn
