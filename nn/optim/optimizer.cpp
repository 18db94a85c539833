#include "nn/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe::nn {

Optimizer::Optimizer(NamedTensors parameters) : parameters_(std::move(parameters)) {
  if (parameters_.empty()) throw std::invalid_argument("optimizer: no parameters to optimise");
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : parameters_) p.zero_grad();
}

Tensor Optimizer::state(size_t i, const std::string& state_name) {
  const auto& [name, p] = parameters_[i];
  auto [it, inserted] = state_.try_emplace(name + "." + state_name);
  if (inserted) it->second = zeros(p.shape(), DType::Float32, p.device());
  return it->second;
}

std::map<std::string, Tensor> Optimizer::state_dict() const {
  std::map<std::string, Tensor> out = state_;
  out["step"] = full({}, static_cast<float>(steps_));
  return out;
}

void Optimizer::load_state_dict(const std::map<std::string, Tensor>& state) {
  auto step = state.find("step");
  if (step == state.end()) throw std::invalid_argument("optimizer state: missing 'step'");
  if (step->second.numel() != 1 || step->second.dtype() != DType::Float32 || !(step->second.item() >= 0) ||
      step->second.item() != std::floor(step->second.item()))
    throw std::invalid_argument("optimizer state: 'step' must be one whole number >= 0");
  const int64_t steps = static_cast<int64_t>(step->second.item());
  std::map<std::string, Tensor> expected;  // name -> the parameter whose shape it must have
  if (steps > 0)
    for (const auto& [name, p] : parameters_)
      for (const std::string& state_name : state_names()) expected[name + "." + state_name] = p;
  std::vector<std::string> missing;
  for (const auto& [key, p] : expected) {
    auto it = state.find(key);
    if (it == state.end()) {
      missing.push_back(key);
    } else if (it->second.shape() != p.shape() || it->second.dtype() != DType::Float32) {
      throw std::invalid_argument("optimizer state: '" + key + "' has shape " + shape_str(it->second.shape()) +
                                  " but its parameter has shape " + shape_str(p.shape()));
    }
  }
  if (!missing.empty())
    throw std::invalid_argument("optimizer state: '" + missing.front() + "'" +
                                (missing.size() > 1 ? " and " + std::to_string(missing.size() - 1) + " more are" : " is") +
                                " missing after " + std::to_string(steps) +
                                " steps; resuming would restart those moments and not continue the run");
  for (const auto& [key, t] : state)
    if (key != "step" && !expected.count(key))
      throw std::invalid_argument("optimizer state: '" + key + "' belongs to no parameter of this optimizer");
  steps_ = steps;
  state_.clear();
  for (const auto& [name, t] : state)
    if (name != "step") state_[name] = t.clone();
}

SGD::SGD(NamedTensors parameters, const nn::SgdOptions& o) : Optimizer(std::move(parameters)), options(o) {
  learning_rate_ = o.lr;
}

std::vector<std::string> SGD::state_names() const {
  return options.momentum != 0.0f ? std::vector<std::string>{"momentum"} : std::vector<std::string>{};
}

void SGD::update(float gradient_scale) {
  NoGradGuard no_grad;
  nn::SgdOptions o = options;
  o.lr = learning_rate_;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor& p = parameters_[i].second;
    if (!p.grad().defined()) continue;
    // A parameter's first update initialises its momentum buffer (PyTorch's convention).
    const bool first_update = !state_.count(parameters_[i].first + ".momentum");
    const Tensor buffer = o.momentum != 0.0f ? state(i, "momentum") : Tensor();
    sgd_step_(p, p.grad(), buffer, o, first_update, gradient_scale);
  }
  ++steps_;
}

AdamW::AdamW(NamedTensors parameters, const nn::AdamWOptions& o) : Optimizer(std::move(parameters)), options(o) {
  learning_rate_ = o.lr;
}

void AdamW::update(float gradient_scale) {
  NoGradGuard no_grad;
  nn::AdamWOptions o = options;
  o.lr = learning_rate_;
  ++steps_;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor& p = parameters_[i].second;
    if (!p.grad().defined()) continue;
    // Biases and normalisation gains (1-D) are not decayed, as is usual for Transformers.
    nn::AdamWOptions per_parameter = o;
    if (p.dim() < 2) per_parameter.weight_decay = 0.0f;
    adamw_step_(p, p.grad(), state(i, "exp_avg"), state(i, "exp_avg_sq"), per_parameter, steps_, gradient_scale);
  }
}

float LearningRateSchedule::at(int64_t step) const {
  if (kind == Kind::Constant) return peak;
  if (step < warmup_steps) return peak * static_cast<float>(step + 1) / static_cast<float>(warmup_steps);
  const float progress = std::min(1.0f, static_cast<float>(step - warmup_steps) /
                                            static_cast<float>(std::max<int64_t>(1, total_steps - warmup_steps)));
  const float cosine = 0.5f * (1.0f + std::cos(3.14159265358979f * progress));
  return peak * (min_ratio + (1.0f - min_ratio) * cosine);
}

namespace {
// Squares summed in float over runs of 1024 entries on the gradient's device, the runs in
// double here: only one float per run leaves a GPU.
double squared_norm(const Tensor& gradient) {
  constexpr int64_t kRun = 1024;
  const Tensor g = gradient.contiguous();
  Tensor runs = empty({(g.numel() + kRun - 1) / kRun}, DType::Float32, g.device());
  kernels::squared_run_sums(g.device(), g.data<float>(), runs.data<float>(), g.numel(), kRun);
  if (!runs.device().is_cpu()) runs = runs.to(Device::cpu());
  double total = 0.0;
  for (int64_t r = 0; r < runs.numel(); ++r) total += runs.data<float>()[r];
  return total;
}
}  // namespace

std::vector<double> squared_gradient_norms(const std::vector<Tensor>& parameters) {
  std::vector<double> squares;
  for (const Tensor& p : parameters) squares.push_back(p.grad().defined() ? squared_norm(p.grad()) : 0.0);
  return squares;
}

namespace {
float norm_of(const std::vector<double>& squares) {
  double total = 0.0;
  for (double s : squares) total += s;
  return static_cast<float>(std::sqrt(total));
}
}  // namespace

float clip_factor(const std::vector<double>& squares, float max_norm) {
  const float norm = norm_of(squares);
  return norm > max_norm && norm > 0.0f ? max_norm / norm : 1.0f;
}

float clip_grad_norm_to(const std::vector<Tensor>& parameters, const std::vector<double>& squares, float max_norm) {
  NoGradGuard no_grad;
  const float factor = clip_factor(squares, max_norm);
  if (factor != 1.0f)
    for (const Tensor& p : parameters)
      if (p.grad().defined()) p.set_grad(scale(p.grad(), factor));
  return norm_of(squares);
}

float clip_grad_norm(const std::vector<Tensor>& parameters, float max_norm) {
  return clip_grad_norm_to(parameters, squared_gradient_norms(parameters), max_norm);
}

}  // namespace minipipe::nn
