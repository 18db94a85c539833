#include "autograd/checkpoint.h"

#include "autograd/engine.h"
#include "autograd/node.h"
#include "tensor/random.h"

namespace minipipe {

namespace {
std::vector<Tensor> detached_copies(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> out;
  for (const Tensor& t : inputs) {
    Tensor d = t.defined() ? t.detach() : Tensor();
    if (d.defined() && t.requires_grad()) d.set_requires_grad(true);
    out.push_back(d);
  }
  return out;
}
}  // namespace

Tensor checkpoint(const CheckpointedFunction& function, const std::vector<Tensor>& inputs) {
  const Generator::State random_state = default_generator().state();
  // Forward with recording on, to learn whether anything inside (inputs or parameters)
  // requires grad; the graph is dropped when `tracked` goes out of scope, freeing the
  // intermediate activations right away.
  Tensor output;
  {
    const Tensor tracked = function(detached_copies(inputs));
    if (!grad_enabled() || !tracked.requires_grad()) return tracked;
    output = tracked.detach();
  }
  return record("checkpoint", output, inputs, [function, inputs, random_state](const Tensor& g) {
    std::vector<Tensor> leaves = detached_copies(inputs);
    Generator& generator = default_generator();
    const Generator::State now = generator.state();
    generator.set_state(random_state);  // replay the forward's draws
    Tensor recomputed;
    {
      GradModeGuard enable_grad(true);
      recomputed = function(leaves);
    }
    generator.set_state(now);
    backward({recomputed}, {g});  // parameters accumulate; leaves collect the input grads
    std::vector<Tensor> grads;
    for (const Tensor& leaf : leaves) grads.push_back(leaf.defined() && leaf.requires_grad() ? leaf.grad() : Tensor());
    return grads;
  }, /*always=*/true);
}

}  // namespace minipipe
