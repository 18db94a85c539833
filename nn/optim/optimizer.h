#pragma once
// Optimizers over a list of parameters. State (momentum, Adam moments, step count) is
// exposed by name so checkpoints can save and restore it exactly.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/optim/optimizer_steps.h"
#include "nn/module.h"

namespace minipipe::nn {

class Optimizer {
 public:
  explicit Optimizer(NamedTensors parameters);
  virtual ~Optimizer() = default;
  // Updates every parameter that has a gradient, with the current learning rate, as if each
  // gradient had first been multiplied by gradient_scale (clip_factor's factor): bit for bit
  // what scaling the gradients would give, without a pass that writes them.
  void step(float gradient_scale = 1.0f) { update(gradient_scale); }
  void zero_grad();

  float learning_rate() const { return learning_rate_; }
  void set_learning_rate(float lr) { learning_rate_ = lr; }
  int64_t steps_taken() const { return steps_; }
  const NamedTensors& named_parameters() const { return parameters_; }

  // "<parameter name>.<state name>" -> tensor, plus the step count in "step".
  std::map<std::string, Tensor> state_dict() const;
  // Checks the state is whole before taking it: the step count, and after a first step every
  // parameter's every state_names() entry with the parameter's shape, nothing else; throws
  // naming what is missing, misshapen or unexpected.
  void load_state_dict(const std::map<std::string, Tensor>& state);
  // The state each parameter has once the optimizer has stepped ("exp_avg", ...).
  virtual std::vector<std::string> state_names() const = 0;

 protected:
  virtual void update(float gradient_scale) = 0;
  // The state tensor `state_name` of parameter i, created as zeros on first use.
  Tensor state(size_t i, const std::string& state_name);
  NamedTensors parameters_;
  std::map<std::string, Tensor> state_;
  float learning_rate_ = 0.0f;
  int64_t steps_ = 0;
};

class SGD : public Optimizer {
 public:
  SGD(NamedTensors parameters, const nn::SgdOptions& options);
  std::vector<std::string> state_names() const override;
  nn::SgdOptions options;

 protected:
  void update(float gradient_scale) override;
};

class AdamW : public Optimizer {
 public:
  AdamW(NamedTensors parameters, const nn::AdamWOptions& options);
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  nn::AdamWOptions options;

 protected:
  void update(float gradient_scale) override;
};

// Learning rate at a step: constant, or linear warmup from 0 over `warmup_steps` followed
// by a cosine decay to min_ratio * peak at total_steps (Loshchilov & Hutter 2017).
struct LearningRateSchedule {
  enum class Kind { Constant, WarmupCosine } kind = Kind::Constant;
  float peak = 1e-3f;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  float min_ratio = 0.1f;
  float at(int64_t step) const;
};

// Scales all gradients so that their global L2 norm is at most max_norm; returns the norm
// before clipping. The norm is the square root of the parameters' squared_gradient_norms
// added in order, so processes that hold parts of a model reach the same value bit for bit
// by adding every part's list in model order (clip_grad_norm_to).
float clip_grad_norm(const std::vector<Tensor>& parameters, float max_norm);
// Each parameter's sum of squared gradient entries (0 without a gradient): in float over runs
// of 1024 entries, sixteen lanes at a time, and in double across runs.
std::vector<double> squared_gradient_norms(const std::vector<Tensor>& parameters);
// clip_grad_norm with the norm given as its squares: the whole model's, in model order.
float clip_grad_norm_to(const std::vector<Tensor>& parameters, const std::vector<double>& squares, float max_norm);
// The factor clip_grad_norm_to would scale the gradients by (1 when it would leave them), for
// Optimizer::step to apply as it reads them.
float clip_factor(const std::vector<double>& squares, float max_norm);


}  // namespace minipipe::nn
