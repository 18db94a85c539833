#include "nn/optim/optimizer_steps.h"

#include <stdexcept>

#include "autograd/op_support.h"
#include "kernels/dispatch.h"

namespace minipipe {

namespace {
// Optimizer state is updated in place, so everything must be contiguous, same shape and device.
void check_state(const char* op, const char* name, const Tensor& t, const Tensor& param) {
  detail::check_float_input(op, name, t);
  check_same_device(op, param, t);
  if (t.shape() != param.shape())
    throw std::invalid_argument(std::string(op) + ": " + name + " has shape " + shape_str(t.shape()) +
                                " but the parameter has shape " + shape_str(param.shape()));
  if (!t.is_contiguous())
    throw std::invalid_argument(std::string(op) + ": " + name + " must be contiguous (it is updated in place)");
}
}  // namespace

void sgd_step_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer,
               const nn::SgdOptions& o, bool first_step, float grad_scale) {
  check_state("sgd_step_", "param", param, param);
  const Tensor g = grad.defined() ? grad.contiguous() : grad;
  check_state("sgd_step_", "grad", g, param);
  if (o.momentum != 0.0f) check_state("sgd_step_", "momentum_buffer", momentum_buffer, param);
  if (o.nesterov && (o.momentum <= 0.0f || o.dampening != 0.0f))
    throw std::invalid_argument("sgd_step_: Nesterov momentum needs momentum > 0 and dampening 0");
  kernels::sgd_update(param.device(), param.data<float>(), g.data<float>(), grad_scale,
                      o.momentum != 0.0f ? momentum_buffer.data<float>() : nullptr, param.numel(), o.lr, o.momentum,
                      o.dampening, o.weight_decay, o.nesterov, first_step);
}

void adamw_step_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                 const nn::AdamWOptions& o, int64_t step, float grad_scale) {
  check_state("adamw_step_", "param", param, param);
  const Tensor g = grad.defined() ? grad.contiguous() : grad;
  check_state("adamw_step_", "grad", g, param);
  check_state("adamw_step_", "exp_avg", exp_avg, param);
  check_state("adamw_step_", "exp_avg_sq", exp_avg_sq, param);
  if (step < 1) throw std::invalid_argument("adamw_step_: step counts from 1, got " + std::to_string(step));
  kernels::adamw_update(param.device(), param.data<float>(), g.data<float>(), grad_scale, exp_avg.data<float>(),
                        exp_avg_sq.data<float>(), param.numel(), o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, step);
}

}  // namespace minipipe
