#pragma once
// A Sequential described layer by layer, so that a process of a pipeline can build the layers
// it runs and nothing else. Each layer draws its initial values from random streams of its
// own, fixed by the model's seed and the layer's index alone (layer_generator), so a layer
// built on its own equals the same layer of the whole model, whatever the partition and the
// number of processes (DeepSpeed's PipelineModule seeds its layers by index for the same
// reason). The layers another process holds are AbsentLayer placeholders, which keep the
// Sequential's indices and names: a partial model's named_parameters() and state_dict() use
// the whole model's names.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/sequential.h"
#include "tensor/random.h"

namespace minipipe::nn {

// The generator layer `index` of a model seeded `seed` draws its initial values from: the
// streams from index x 2^32 on, so layers never share a stream.
Generator layer_generator(uint64_t seed, size_t index);

// A layer held by another process: no parameters, and a forward that says where it is.
class AbsentLayer : public Module {
 public:
  // `parameters`: how many the layer has where it is held (what partitions by parameter count
  // read); -1 when not counted. `stashes` and `pops`: the skip connections it stashes and pops
  // (nn/skip.h), which the pipeline routes between the processes.
  explicit AbsentLayer(std::string name, int64_t parameters = -1, std::vector<std::string> stashes = {},
                       std::vector<std::string> pops = {})
      : name_(std::move(name)), parameters_(parameters), stashes_(std::move(stashes)), pops_(std::move(pops)) {}
  // Stands for `layer`, counted.
  static std::shared_ptr<AbsentLayer> standing_for(const std::string& name, const Module& layer);
  Tensor forward(const Tensor& input) override;
  std::string type_name() const override { return "AbsentLayer"; }
  int64_t stands_for_parameters() const { return parameters_; }
  const std::vector<std::string>& skips_stashed() const { return stashes_; }
  const std::vector<std::string>& skips_popped() const { return pops_; }

 private:
  std::string name_;
  int64_t parameters_;
  std::vector<std::string> stashes_, pops_;
};
bool is_absent(const Module& layer);
// A layer's parameter count, or for an absent layer the count of the layer it stands for.
int64_t layer_parameter_count(const Module& layer);

struct ModelRecipe {
  std::vector<std::string> names;  // one per layer, in order
  // Builds layer `index` from layer_generator(seed, index). `earlier` holds layers 0 ..
  // index - 1 as built so far (some may be absent): a layer that ties a weight to an earlier
  // one (a GPT head on the token embedding) takes the tensor from there when it is present.
  std::function<ModulePtr(size_t index, const Sequential& earlier)> build_layer;
  // Weights a layer shares with an earlier one: a process holding only one of the two holds
  // a copy of equal values, which a pipeline across processes keeps equal (its gradient is
  // the sum of both sides', and the checkpoint holds it once, under the earlier name).
  struct Tie {
    size_t layer;  // the later layer
    std::string name;  // in the model: "head.logits.weight"
    size_t earlier_layer;
    std::string earlier_name;  // "embedding.tokens.weight"
  };
  std::vector<Tie> ties;

  size_t size() const { return names.size(); }
  std::shared_ptr<Sequential> build() const;  // every layer
  // The layers `wanted` names (one flag per layer); the others absent, counted when
  // `count_absent` (each is built on its own and dropped: at most one at a time is held).
  std::shared_ptr<Sequential> build(const std::vector<bool>& wanted, bool count_absent = false) const;
  // No layer at all, only absent ones (what a plan is made from without building).
  std::shared_ptr<Sequential> skeleton(bool count_parameters = false) const {
    return build(std::vector<bool>(size(), false), count_parameters);
  }
};

}  // namespace minipipe::nn
