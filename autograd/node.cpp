#include "autograd/node.h"

#include <stdexcept>

namespace minipipe {

namespace {
thread_local bool grad_mode = true;
}

bool grad_enabled() { return grad_mode; }
GradModeGuard::GradModeGuard(bool enabled) : previous_(grad_mode) { grad_mode = enabled; }
GradModeGuard::~GradModeGuard() { grad_mode = previous_; }

std::vector<Tensor> Node::apply(const Tensor& grad_output) {
  if (!backward_)
    throw std::runtime_error("backward through '" + name_ + "' a second time: its saved tensors "
                             "were freed by the first backward; pass retain_graph=true to the "
                             "first one if you need two");
  std::vector<Tensor> grads = backward_(grad_output);
  if (grads.size() != edges_.size())
    throw std::logic_error("backward of '" + name_ + "' returned " + std::to_string(grads.size()) +
                           " gradients for " + std::to_string(edges_.size()) + " inputs");
  return grads;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor record(const char* name, Tensor output, const std::vector<Tensor>& inputs,
              BackwardFunction backward, bool always) {
  if (!grad_enabled() || (!always && !any_requires_grad(inputs))) return output;
  std::vector<Edge> edges(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& input = inputs[i];
    if (!input.defined() || !input.requires_grad()) continue;
    if (input.grad_fn()) edges[i].node = input.grad_fn();
    else edges[i].leaf = input.impl_ptr();
  }
  output.impl()->grad_fn =
      std::make_shared<Node>(name, std::move(edges), std::move(backward), output.shape());
  output.impl()->requires_grad = true;
  return output;
}

}  // namespace minipipe
