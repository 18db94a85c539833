#pragma once
// An ordered list of modules applied one after the other. Children are addressable by
// index and by name, and a Sequential nests; the pipeline module cuts one into stages.
#include <initializer_list>

#include "nn/module.h"

namespace minipipe::nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  // Children named "0", "1", ... in order.
  Sequential(std::initializer_list<ModulePtr> modules);

  // Appends a child; without a name it is named by its index.
  Sequential& add(ModulePtr module, std::string name = "");
  size_t size() const { return children().size(); }
  const ModulePtr& operator[](size_t index) const;
  ModulePtr at(const std::string& name) const;
  const std::string& name_of(size_t index) const;
  void replace(size_t index, ModulePtr module) { replace_child(index, std::move(module)); }  // same name

  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "Sequential"; }
};

}  // namespace minipipe::nn
