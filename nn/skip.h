#pragma once
// Skip connections that jump over layers, and over pipeline stages (torchgpipe's skip and
// portal, Kim et al. 2020, section 3.3): SkipStash keeps the tensor passing through it under
// a name, and a later SkipPop of that name combines it with its own input. On one device the
// two meet in the thread's SkipStore. A pipeline that cuts the model between them sends the
// tensor from the stash's stage straight to the pop's, and its gradient straight back,
// instead of through every stage in between (pipeline/executor.h).
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nn/module.h"

namespace minipipe::nn {

// Named tensors stashed and not yet popped. Each thread has a default store; a Scope puts
// another in its place (the pipeline gives each stage's forward of a unit its own).
class SkipStore {
 public:
  void stash(const std::string& name, const Tensor& value);  // throws if `name` is held
  Tensor pop(const std::string& name);                       // throws if it is not
  bool empty() const { return tensors_.empty(); }
  // What is held, and the store emptied.
  std::map<std::string, Tensor> take_all() { return std::move(tensors_); }

  class Scope {
   public:
    explicit Scope(SkipStore& store);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    SkipStore* previous_;
  };

 private:
  std::map<std::string, Tensor> tensors_;
};

SkipStore& skip_store();  // this thread's current store

// Returns its input, which it stashes under `name`.
class SkipStash : public Module {
 public:
  explicit SkipStash(std::string name);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SkipStash"; }
  const std::string name;
};

// combine(input, the tensor stashed under `name`), by default their sum; the stashed tensor
// is first moved to the input's device.
class SkipPop : public Module {
 public:
  using Combine = std::function<Tensor(const Tensor& input, const Tensor& skipped)>;
  explicit SkipPop(std::string name, Combine combine = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SkipPop"; }
  const std::string name;

 private:
  Combine combine_;
};

// The names that `module` (and everything inside it) stashes and pops, in forward order.
std::vector<std::string> skips_stashed(const Module& module);
std::vector<std::string> skips_popped(const Module& module);

}  // namespace minipipe::nn
