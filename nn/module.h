#pragma once
// Module: a layer or a model. Parameters, buffers (running statistics) and submodules are
// registered by name, so state dicts, checkpoints and partitioning by name come for free
// (as in libtorch, without its holder machinery). A module maps one tensor to one tensor,
// which is what lets a Sequential be cut into pipeline stages.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/factories.h"  // a model's users make tensors (from_int_vector, zeros, ...) too
#include "tensor/tensor.h"

namespace minipipe::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;
  virtual Tensor forward(const Tensor& input) = 0;
  Tensor operator()(const Tensor& input) { return forward(input); }
  // The type name shown in summaries ("Linear", "TransformerBlock").
  virtual std::string type_name() const = 0;

  // Recursive, in registration order; names are dotted paths ("blocks.0.attention.qkv.weight").
  // A tensor registered in two places (tied weights) is listed once, by its first name.
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;
  int64_t parameter_count() const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

  // Parameters and buffers by name. load_state_dict copies values into the existing
  // tensors, so optimizers holding them keep working; a missing, unexpected or misshapen
  // entry is an error naming it.
  std::map<std::string, Tensor> state_dict() const;
  void load_state_dict(const std::map<std::string, Tensor>& state);

  void train(bool training = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Moves every parameter and buffer in place: handles held elsewhere see the move.
  void to(Device device);
  void zero_grad();

 protected:
  Tensor register_parameter(const std::string& name, Tensor value);
  Tensor register_buffer(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  void replace_child(size_t index, std::shared_ptr<Module> module);  // keeps the name

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, bool buffers, NamedTensors& out) const;

  NamedTensors parameters_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

using ModulePtr = std::shared_ptr<Module>;

}  // namespace minipipe::nn
