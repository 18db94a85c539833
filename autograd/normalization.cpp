#include "autograd/normalization.h"

#include <stdexcept>

#include "autograd/node.h"
#include "autograd/op_support.h"
#include "kernels/dispatch.h"
#include "tensor/factories.h"

namespace minipipe {

namespace {
void check_vector(const char* op, const char* name, const Tensor& t, int64_t size, const Tensor& x) {
  detail::check_float_input(op, name, t);
  check_same_device(op, x, t);
  if (t.shape() != Shape{size})
    throw std::invalid_argument(std::string(op) + ": " + name + " must have shape [" + std::to_string(size) +
                                "] for input " + shape_str(x.shape()) + ", got " + shape_str(t.shape()));
}
}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  detail::check_float_input("layer_norm", "x", x);
  if (x.dim() == 0) throw std::invalid_argument("layer_norm: x needs at least one dim");
  const int64_t cols = x.shape().back(), rows = cols == 0 ? 0 : x.numel() / cols;
  check_vector("layer_norm", "gamma", gamma, cols, x);
  check_vector("layer_norm", "beta", beta, cols, x);
  const Tensor input = x.contiguous(), g = gamma.contiguous(), b = beta.contiguous();
  Tensor out = empty(x.shape(), DType::Float32, x.device());
  Tensor mean = empty({rows}, DType::Float32, x.device()), rstd = empty({rows}, DType::Float32, x.device());
  kernels::layer_norm_forward(x.device(), input.data<float>(), g.data<float>(), b.data<float>(), out.data<float>(),
                              mean.data<float>(), rstd.data<float>(), rows, cols, eps);
  if (!any_requires_grad({x, gamma, beta})) return out;
  const Tensor saved_x = input.detach(), saved_gamma = g.detach();
  return record("layer_norm", out, {x, gamma, beta}, [saved_x, saved_gamma, mean, rstd, rows, cols](const Tensor& grad) {
    const Tensor dy = grad.contiguous();
    Tensor dx = empty(saved_x.shape(), DType::Float32, dy.device());
    Tensor dgamma = zeros({cols}, DType::Float32, dy.device()), dbeta = zeros({cols}, DType::Float32, dy.device());
    kernels::layer_norm_backward(dy.device(), saved_x.data<float>(), saved_gamma.data<float>(), mean.data<float>(),
                                 rstd.data<float>(), dy.data<float>(), dx.data<float>(), dgamma.data<float>(),
                                 dbeta.data<float>(), rows, cols);
    return std::vector<Tensor>{dx, dgamma, dbeta};
  });
}

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                  const Tensor& running_var, bool training, float momentum, float eps) {
  detail::check_float_input("batch_norm", "x", x);
  if (x.dim() != 2 && x.dim() != 4)
    throw std::invalid_argument("batch_norm: x must be [N, C] or [N, C, H, W], got " + shape_str(x.shape()));
  const int64_t n = x.shape()[0], channels = x.shape()[1], spatial = x.dim() == 4 ? x.shape()[2] * x.shape()[3] : 1;
  for (auto [name, t] : {std::pair{"gamma", gamma}, {"beta", beta}, {"running_mean", running_mean}, {"running_var", running_var}})
    check_vector("batch_norm", name, t, channels, x);
  if (!running_mean.is_contiguous() || !running_var.is_contiguous())
    throw std::invalid_argument("batch_norm: running_mean and running_var are updated in place and must be contiguous");
  if (training && n * spatial < 2)
    throw std::invalid_argument("batch_norm: training needs more than one value per channel, got input " +
                                shape_str(x.shape()) + " (use a larger (micro-)batch, or eval mode)");
  const Tensor input = x.contiguous(), g = gamma.contiguous(), b = beta.contiguous();
  Tensor mean = empty({channels}, DType::Float32, x.device()), rstd = empty({channels}, DType::Float32, x.device());
  if (training)
    kernels::batch_norm_training_statistics(x.device(), input.data<float>(), mean.data<float>(), rstd.data<float>(),
                                            running_mean.data<float>(), running_var.data<float>(), n, channels,
                                            spatial, momentum, eps);
  else
    kernels::batch_norm_eval_statistics(x.device(), running_mean.data<float>(), running_var.data<float>(),
                                        mean.data<float>(), rstd.data<float>(), channels, eps);
  Tensor out = empty(x.shape(), DType::Float32, x.device());
  kernels::batch_norm_apply(x.device(), input.data<float>(), mean.data<float>(), rstd.data<float>(), g.data<float>(),
                            b.data<float>(), out.data<float>(), n, channels, spatial);
  if (!any_requires_grad({x, gamma, beta})) return out;
  const Tensor saved_x = input.detach(), saved_gamma = g.detach();
  return record("batch_norm", out, {x, gamma, beta},
                [saved_x, saved_gamma, mean, rstd, n, channels, spatial, training](const Tensor& grad) {
    const Tensor dy = grad.contiguous();
    Tensor dx = empty(saved_x.shape(), DType::Float32, dy.device());
    Tensor dgamma = empty({channels}, DType::Float32, dy.device()), dbeta = empty({channels}, DType::Float32, dy.device());
    kernels::batch_norm_backward(dy.device(), saved_x.data<float>(), dy.data<float>(), mean.data<float>(),
                                 rstd.data<float>(), saved_gamma.data<float>(), dx.data<float>(), dgamma.data<float>(),
                                 dbeta.data<float>(), n, channels, spatial, training);
    return std::vector<Tensor>{dx, dgamma, dbeta};
  });
}

}  // namespace minipipe
