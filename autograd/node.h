#pragma once
// The autograd graph. Every op has one output; the Node attached to that output holds the
// op's backward formula (a lambda written beside the forward, as in flashlight) and one
// Edge per input saying where that input's gradient goes.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace minipipe {

// Where the gradient of one input goes. At most one of the two is set; neither means the
// input needs no gradient.
struct Edge {
  std::shared_ptr<Node> node;        // the input was computed by an op
  std::shared_ptr<TensorImpl> leaf;  // the input is a leaf that requires grad
};

// Returns one gradient per input (an undefined Tensor where an input needs none).
using BackwardFunction = std::function<std::vector<Tensor>(const Tensor& grad_output)>;
// The same, computing only the gradients of the inputs marked in `wanted` (undefined
// elsewhere). Ops whose inputs include weights (linear, matmul, conv2d, embedding) give one,
// so that a zero-bubble schedule can run a backward's input part (B) and its weight part (W)
// at different times without computing anything twice (autograd/engine.h).
using PartialBackwardFunction =
    std::function<std::vector<Tensor>(const Tensor& grad_output, const std::vector<bool>& wanted)>;

class Node {
 public:
  Node(std::string name, std::vector<Edge> edges, BackwardFunction backward, Shape output_shape)
      : name_(std::move(name)), edges_(std::move(edges)), backward_(std::move(backward)),
        output_shape_(std::move(output_shape)) {}
  Node(std::string name, std::vector<Edge> edges, PartialBackwardFunction partial, Shape output_shape);

  const std::string& name() const { return name_; }
  const std::vector<Edge>& edges() const { return edges_; }
  const Shape& output_shape() const { return output_shape_; }

  // Runs the backward formula and checks that it returned one gradient per input.
  std::vector<Tensor> apply(const Tensor& grad_output);
  // Whether the op can compute some of its inputs' gradients alone, and that computation.
  bool splits() const { return static_cast<bool>(partial_); }
  std::vector<Tensor> apply(const Tensor& grad_output, const std::vector<bool>& wanted);
  // Drops the backward formula and the tensors it saved (after a backward without
  // retain_graph), so activations are freed as soon as they are used.
  void release() { backward_ = nullptr, partial_ = nullptr; }

 private:
  std::vector<Tensor> checked(std::vector<Tensor> grads) const;

  std::string name_;
  std::vector<Edge> edges_;
  BackwardFunction backward_;
  PartialBackwardFunction partial_;
  Shape output_shape_;
};

// Grad mode is per thread: each pipeline stage thread decides for itself.
bool grad_enabled();
class GradModeGuard {
 public:
  explicit GradModeGuard(bool enabled);
  ~GradModeGuard();
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool previous_;
};
class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};

// Attaches history to `output` of op `name`: when grad mode is on and an input requires
// grad (or `always` is set), output gets a Node with `backward`. Returns output.
Tensor record(const char* name, Tensor output, const std::vector<Tensor>& inputs,
              BackwardFunction backward, bool always = false);
// The same for an op that can compute its inputs' gradients separately.
Tensor record(const char* name, Tensor output, const std::vector<Tensor>& inputs, PartialBackwardFunction backward);

// True when recording would happen for these inputs: ops use it to skip saving tensors.
bool any_requires_grad(const std::vector<Tensor>& inputs);

}  // namespace minipipe
