#include "autograd/engine.h"

#include <deque>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "kernels/profile.h"
#include "tensor/factories.h"

namespace minipipe {

namespace {

Tensor sum_of(const Tensor& total, const Tensor& g) { return total.defined() ? add(total, g) : g; }

void check_gradient_shape(const Tensor& g, const Shape& expected, const std::string& where) {
  if (g.shape() != expected)
    throw std::logic_error("gradient of shape " + shape_str(g.shape()) + " for " + where +
                           " of shape " + shape_str(expected));
}

// This thread's GradientRedirects: parameter -> the leaf whose .grad stands in for its.
thread_local std::unordered_map<const TensorImpl*, std::shared_ptr<TensorImpl>> redirected;

// A leaf's first gradient: g's buffer itself when no other tensor holds it (a weight's gradient
// is usually a GEMM's fresh output: copying it cost 1% of a GPT step), else a copy, so that two
// leaves never share a gradient buffer and an in-place change to a .grad reaches nothing else.
std::shared_ptr<TensorImpl> first_gradient(const Tensor& g) {
  const bool sole_owner = g.impl()->storage.use_count() == 1 && g.offset() == 0 && g.is_contiguous();
  return sole_owner ? g.detach().impl_ptr() : g.clone().impl_ptr();
}

// What the engine does with the gradient that reaches a leaf or a chosen input.
void accumulate_into_leaf(std::shared_ptr<TensorImpl> impl, const Tensor& g) {
  check_gradient_shape(g, impl->shape, "a leaf");
  if (auto it = redirected.find(impl.get()); it != redirected.end()) impl = it->second;
  impl->grad = impl->grad ? add(Tensor(impl->grad), g).impl_ptr() : first_gradient(g);
}

}  // namespace

GradientRedirect::GradientRedirect(const Tensor& parameter, const Tensor& stand_in) : parameter_(parameter.impl()) {
  if (parameter.shape() != stand_in.shape() || parameter.device() != stand_in.device())
    throw std::invalid_argument("GradientRedirect: the stand-in must have the parameter's shape and device");
  if (!redirected.emplace(parameter_, stand_in.impl_ptr()).second)
    throw std::logic_error("GradientRedirect: this parameter's gradients are already redirected on this thread");
}

GradientRedirect::~GradientRedirect() { redirected.erase(parameter_); }

// Filled by backward_inputs (engine.h), in the order a fused backward would reach them.
struct DeferredWeightGradients::Entry {
  std::shared_ptr<Node> node;  // an op that computes its weight gradients alone, later
  Tensor gradient;             // its output gradient, or a weight's finished gradient
  std::vector<bool> weights;   // which of the node's inputs are weights
  std::shared_ptr<TensorImpl> leaf;  // without a node: the weight `gradient` is for
};

namespace {

struct Sink {
  bool accumulate_into_leaves = true;
  std::unordered_map<const TensorImpl*, size_t> chosen_leaves;
  std::unordered_map<const Node*, size_t> chosen_nodes;
  std::vector<Tensor> captured;
  // backward_inputs: the leaves whose gradients are wanted now; every other leaf is a weight,
  // whose gradient waits in `deferred`.
  DeferredWeightGradients* deferred = nullptr;
  std::unordered_set<const TensorImpl*> input_leaves;

  bool is_weight(const std::shared_ptr<TensorImpl>& leaf) const {
    return deferred && leaf && !input_leaves.count(leaf.get());
  }
  void leaf(const std::shared_ptr<TensorImpl>& impl, const Tensor& g) {
    check_gradient_shape(g, impl->shape, "a leaf");
    if (auto it = chosen_leaves.find(impl.get()); it != chosen_leaves.end())
      captured[it->second] = sum_of(captured[it->second], g);
    if (!accumulate_into_leaves) return;
    if (is_weight(impl)) {
      deferred->defer(impl, g);
      return;
    }
    accumulate_into_leaf(impl, g);
  }
};

void run(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads,
         bool retain_graph, Sink& sink) {
  const kernels::ProfilePhase phase("backward");  // for the kernel profile
  if (roots.size() != root_grads.size())
    throw std::invalid_argument("backward: " + std::to_string(roots.size()) + " roots but " +
                                std::to_string(root_grads.size()) + " root gradients");
  NoGradGuard no_grad;  // backward formulas are not themselves recorded

  std::unordered_map<Node*, Tensor> pending;
  std::unordered_map<Node*, int> dependencies;
  std::unordered_map<Node*, std::shared_ptr<Node>> reachable;  // every node the roots reach, kept alive during the run

  // Seed the roots.
  std::vector<Node*> root_nodes;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& root = roots[i];
    check_defined("backward", "a root", root);
    if (!root.requires_grad())
      throw std::invalid_argument("backward: root " + std::to_string(i) + " (shape " +
                                  shape_str(root.shape()) + ") does not require grad: nothing "
                                  "that produced it was marked set_requires_grad()");
    Tensor g = root_grads[i];
    if (!g.defined()) {
      if (root.numel() != 1)
        throw std::invalid_argument("backward: root " + std::to_string(i) + " has shape " +
                                    shape_str(root.shape()) + "; pass a gradient of that shape "
                                    "(only one-element roots get an implicit gradient of 1)");
      g = ones(root.shape(), DType::Float32, root.device());
    }
    if (g.shape() != root.shape())
      throw std::invalid_argument("backward: gradient of shape " + shape_str(g.shape()) +
                                  " for root " + std::to_string(i) + " of shape " +
                                  shape_str(root.shape()));
    check_same_device("backward", root, g);
    if (root.is_leaf()) {
      sink.leaf(root.impl_ptr(), g);
      continue;
    }
    Node* node = root.grad_fn().get();
    pending[node] = sum_of(pending[node], g);
    root_nodes.push_back(node);
  }

  // Count, for every reachable node, how many edges lead into it. A root may also lie inside
  // another root's graph (TeraPipe: a slice's keys feed its output too); it then waits for
  // those edges like any other node.
  std::deque<std::shared_ptr<Node>> stack;
  std::unordered_set<Node*> visited;
  for (const Tensor& root : roots)
    if (!root.is_leaf() && visited.insert(root.grad_fn().get()).second) {
      dependencies[root.grad_fn().get()] = 0;
      stack.push_back(root.grad_fn());
    }
  while (!stack.empty()) {
    std::shared_ptr<Node> node = stack.back();
    stack.pop_back();
    reachable[node.get()] = node;
    for (const Edge& edge : node->edges()) {
      if (!edge.node) continue;
      ++dependencies[edge.node.get()];
      if (visited.insert(edge.node.get()).second) stack.push_back(edge.node);
    }
  }

  // Process nodes once all the gradients flowing into them have arrived.
  std::deque<Node*> ready;
  for (Node* node : root_nodes)
    if (dependencies[node] == 0) {
      dependencies[node] = -1;  // queued
      ready.push_back(node);
    }
  while (!ready.empty()) {
    Node* node = ready.front();
    ready.pop_front();
    Tensor g = std::move(pending[node]);
    pending.erase(node);
    if (auto it = sink.chosen_nodes.find(node); it != sink.chosen_nodes.end() && g.defined())
      sink.captured[it->second] = sum_of(sink.captured[it->second], g);

    std::vector<Tensor> input_grads;
    if (g.defined()) {
      check_gradient_shape(g, node->output_shape(), "the output of '" + node->name() + "'");
      // Zero-bubble's B (backward_inputs): an op that can leave its weight gradients for
      // later computes the others now and waits, with its output gradient, for W.
      std::vector<bool> weights(node->edges().size()), wanted(node->edges().size());
      bool has_weight = false, wants_other = false;
      for (size_t i = 0; i < weights.size(); ++i) {
        const Edge& edge = node->edges()[i];
        weights[i] = sink.is_weight(edge.leaf);
        wanted[i] = !weights[i] && (edge.leaf || edge.node);
        has_weight = has_weight || weights[i];
        wants_other = wants_other || wanted[i];
      }
      if (has_weight && node->splits()) {
        if (wants_other) input_grads = node->apply(g, wanted);
        sink.deferred->defer(reachable.at(node), g, weights);
      } else {
        input_grads = node->apply(g);
        if (!retain_graph) node->release();
      }
    }
    for (size_t i = 0; i < node->edges().size(); ++i) {
      const Edge& edge = node->edges()[i];
      const Tensor input_grad = i < input_grads.size() ? input_grads[i] : Tensor();
      if (edge.leaf && input_grad.defined()) sink.leaf(edge.leaf, input_grad);
      if (!edge.node) continue;
      Node* next = edge.node.get();
      if (input_grad.defined()) pending[next] = sum_of(pending[next], input_grad);
      if (--dependencies[next] == 0) ready.push_back(next);
    }
  }
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads,
              bool retain_graph) {
  Sink sink;
  run(roots, root_grads, retain_graph, sink);
}

std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads,
                         const std::vector<Tensor>& inputs, bool retain_graph) {
  Sink sink;
  sink.accumulate_into_leaves = false;
  sink.captured.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_defined("grad", "an input", inputs[i]);
    if (!inputs[i].requires_grad())
      throw std::invalid_argument("grad: input " + std::to_string(i) + " (shape " +
                                  shape_str(inputs[i].shape()) + ") does not require grad");
    if (inputs[i].is_leaf()) sink.chosen_leaves[inputs[i].impl()] = i;
    else sink.chosen_nodes[inputs[i].grad_fn().get()] = i;
  }
  run(roots, root_grads, retain_graph, sink);
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!sink.captured[i].defined()) sink.captured[i] = zeros_like(inputs[i]);
  return sink.captured;
}

DeferredWeightGradients::DeferredWeightGradients() = default;
DeferredWeightGradients::DeferredWeightGradients(DeferredWeightGradients&&) noexcept = default;
DeferredWeightGradients& DeferredWeightGradients::operator=(DeferredWeightGradients&&) noexcept = default;
DeferredWeightGradients::~DeferredWeightGradients() = default;

void DeferredWeightGradients::defer(std::shared_ptr<Node> node, Tensor grad_output, std::vector<bool> weights) {
  entries_.push_back({std::move(node), std::move(grad_output), std::move(weights), nullptr});
}

void DeferredWeightGradients::defer(std::shared_ptr<TensorImpl> weight, Tensor gradient) {
  entries_.push_back({nullptr, std::move(gradient), {}, std::move(weight)});
}

void DeferredWeightGradients::run() {
  NoGradGuard no_grad;
  const kernels::ProfilePhase phase("backward W");
  for (Entry& entry : entries_) {
    if (!entry.node) {
      accumulate_into_leaf(entry.leaf, entry.gradient);
      continue;
    }
    const std::vector<Tensor> grads = entry.node->apply(entry.gradient, entry.weights);
    for (size_t i = 0; i < grads.size(); ++i)
      if (entry.weights[i] && grads[i].defined()) accumulate_into_leaf(entry.node->edges()[i].leaf, grads[i]);
    entry.node->release();
  }
  entries_.clear();
}

DeferredWeightGradients backward_inputs(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads,
                                        const std::vector<Tensor>& inputs) {
  DeferredWeightGradients deferred;
  Sink sink;
  sink.deferred = &deferred;
  for (const Tensor& input : inputs) {
    check_defined("backward_inputs", "an input", input);
    if (!input.is_leaf() || !input.requires_grad())
      throw std::invalid_argument("backward_inputs: an input (shape " + shape_str(input.shape()) +
                                  ") must be a leaf that requires grad, like a stage's received activation");
    sink.input_leaves.insert(input.impl());
  }
  run(roots, root_grads, /*retain_graph=*/false, sink);
  return deferred;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  minipipe::backward({*this}, {gradient}, retain_graph);
}

}  // namespace minipipe
