#include "autograd/node.h"

#include <stdexcept>

namespace minipipe {

namespace {
thread_local bool grad_mode = true;
}

bool grad_enabled() { return grad_mode; }
GradModeGuard::GradModeGuard(bool enabled) : previous_(grad_mode) { grad_mode = enabled; }
GradModeGuard::~GradModeGuard() { grad_mode = previous_; }

Node::Node(std::string name, std::vector<Edge> edges, PartialBackwardFunction partial, Shape output_shape)
    : name_(std::move(name)), edges_(std::move(edges)), partial_(std::move(partial)), output_shape_(std::move(output_shape)) {
  backward_ = [partial = partial_, inputs = edges_.size()](const Tensor& g) {
    return partial(g, std::vector<bool>(inputs, true));
  };
}

std::vector<Tensor> Node::checked(std::vector<Tensor> grads) const {
  if (grads.size() != edges_.size())
    throw std::logic_error("backward of '" + name_ + "' returned " + std::to_string(grads.size()) +
                           " gradients for " + std::to_string(edges_.size()) + " inputs");
  return grads;
}

std::vector<Tensor> Node::apply(const Tensor& grad_output) {
  if (!backward_)
    throw std::runtime_error("backward through '" + name_ + "' a second time: its saved tensors "
                             "were freed by the first backward; pass retain_graph=true to the "
                             "first one if you need two");
  return checked(backward_(grad_output));
}

std::vector<Tensor> Node::apply(const Tensor& grad_output, const std::vector<bool>& wanted) {
  if (!partial_) throw std::logic_error("'" + name_ + "' cannot compute its inputs' gradients separately");
  return checked(partial_(grad_output, wanted));
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

namespace {
std::vector<Edge> edges_of(const std::vector<Tensor>& inputs) {
  std::vector<Edge> edges(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& input = inputs[i];
    if (!input.defined() || !input.requires_grad()) continue;
    if (input.grad_fn()) edges[i].node = input.grad_fn();
    else edges[i].leaf = input.impl_ptr();
  }
  return edges;
}
}  // namespace

Tensor record(const char* name, Tensor output, const std::vector<Tensor>& inputs,
              BackwardFunction backward, bool always) {
  if (!grad_enabled() || (!always && !any_requires_grad(inputs))) return output;
  output.impl()->grad_fn = std::make_shared<Node>(name, edges_of(inputs), std::move(backward), output.shape());
  output.impl()->requires_grad = true;
  return output;
}

Tensor record(const char* name, Tensor output, const std::vector<Tensor>& inputs, PartialBackwardFunction backward) {
  if (!any_requires_grad(inputs)) return output;
  output.impl()->grad_fn = std::make_shared<Node>(name, edges_of(inputs), std::move(backward), output.shape());
  output.impl()->requires_grad = true;
  return output;
}

}  // namespace minipipe
