#pragma once
// The backward engine (DESIGN.md decision 4). It takes several roots, each with its own
// gradient: a pipeline stage runs backward from its output with the gradient received from
// the next stage, and TeraPipe adds the gradients of keys/values used by later slices.
// The engine keeps no global state, so several threads may run it at once and a backward
// formula may call it again (checkpoint() does).
#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace minipipe {

// Accumulates d(sum_i <roots[i], root_grads[i]>)/d(leaf) into every leaf's .grad. A
// root_grads entry may be undefined for a one-element root (then 1 is used).
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads,
              bool retain_graph = false);

// Returns the gradients with respect to `inputs` (leaves or computed tensors) without
// touching any .grad. An input the roots do not depend on gets zeros.
std::vector<Tensor> grad(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads,
                         const std::vector<Tensor>& inputs, bool retain_graph = false);

// Tied weights across pipeline stages: two stages' threads must not add into one .grad at
// once. While a GradientRedirect lives on a thread, every gradient that would accumulate
// into `parameter`'s .grad on that thread (backward, and W of backward_inputs) accumulates
// into `stand_in`'s instead; the pipeline adds the stand-in's into the parameter's after
// the stages are done. Nests; other threads are unaffected.
class GradientRedirect {
 public:
  GradientRedirect(const Tensor& parameter, const Tensor& stand_in);
  ~GradientRedirect();
  GradientRedirect(const GradientRedirect&) = delete;
  GradientRedirect& operator=(const GradientRedirect&) = delete;

 private:
  const TensorImpl* parameter_;
};

class Node;

// Zero-bubble pipelines (Qi et al. ICLR 2024) split a stage's backward in two: B, the
// gradients that flow to the stage's input (on the critical path to the previous stage),
// and W, the weight gradients, which can wait to fill a bubble. backward_inputs runs B: it
// accumulates the gradients of `inputs` (leaves, like a stage's received activation) and
// returns the weight gradients (every other leaf's) still to do. An op that can compute its
// weight gradients alone (Node::splits: linear, matmul, conv2d, embedding) computes only its
// other gradients now and keeps what it saved until W; the other ops compute everything now
// and only their weight gradients' accumulation waits. Each gradient is computed once, and
// run() accumulates into the weights in the order backward() would, so B then W gives
// exactly backward()'s gradients.
class DeferredWeightGradients {
 public:
  DeferredWeightGradients();
  DeferredWeightGradients(DeferredWeightGradients&&) noexcept;
  DeferredWeightGradients& operator=(DeferredWeightGradients&&) noexcept;
  ~DeferredWeightGradients();
  void run();  // W: compute and accumulate every weight gradient, once
  bool empty() const { return entries_.empty(); }

  // What the engine records during B, in order: an op whose weight gradients (inputs marked
  // in `weights`) are to be computed from `grad_output`, or one weight's finished gradient.
  void defer(std::shared_ptr<Node> node, Tensor grad_output, std::vector<bool> weights);
  void defer(std::shared_ptr<TensorImpl> weight, Tensor gradient);

 private:
  struct Entry;
  std::vector<Entry> entries_;
};

DeferredWeightGradients backward_inputs(const std::vector<Tensor>& roots, const std::vector<Tensor>& root_grads,
                                        const std::vector<Tensor>& inputs);

}  // namespace minipipe
