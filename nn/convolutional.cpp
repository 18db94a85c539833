#include "nn/convolutional.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "autograd/elementwise.h"
#include "autograd/node.h"
#include "autograd/normalization.h"
#include "autograd/reduction.h"
#include "nn/forward_context.h"
#include "tensor/factories.h"

namespace minipipe::nn {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Generator& g, int64_t stride_,
               int64_t padding_, bool with_bias)
    : stride(stride_), padding(padding_) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(in_channels * kernel * kernel));
  weight = register_parameter("weight", rand({out_channels, in_channels, kernel, kernel}, g, -bound, bound));
  if (with_bias) bias = register_parameter("bias", rand({out_channels}, g, -bound, bound));
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, stride, padding); }

BatchNorm2d::BatchNorm2d(int64_t channels, float momentum_, float eps_) : momentum(momentum_), eps(eps_) {
  weight = register_parameter("weight", ones({channels}));
  bias = register_parameter("bias", zeros({channels}));
  running_mean = register_buffer("running_mean", zeros({channels}));
  running_var = register_buffer("running_var", ones({channels}));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  // A recomputed forward (checkpointing) must not move the running statistics a second
  // time: with momentum 0 they stay exactly as they are. Deferred, they move at the
  // mini-batch's last micro-batch instead.
  const ForwardContext& context = forward_context();
  const bool deferred = context.deferred_batch_norm && context.micro_batches > 1 && is_training();
  const float update = context.recomputing || deferred ? 0.0f : momentum;
  const Tensor out = batch_norm(x, weight, bias, running_mean, running_var, is_training(), update, eps);
  if (deferred && !context.recomputing) add_to_deferred_statistics(x, context.micro_batch + 1 == context.micro_batches);
  return out;
}

// torchgpipe's DeferredBatchNorm: per-channel sums and sums of squares, in double, over the
// mini-batch's micro-batches; at the last one, the running statistics move as they would
// have for the whole mini-batch at once (mean, and the unbiased variance).
void BatchNorm2d::add_to_deferred_statistics(const Tensor& x, bool last_micro_batch) {
  const int64_t n = x.shape()[0], channels = x.shape()[1], spatial = x.shape()[2] * x.shape()[3];
  const std::vector<float> values = x.detach().to(Device::cpu()).contiguous().to_vector<float>();
  sums_.resize(channels, 0.0), squares_.resize(channels, 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t s = 0; s < spatial; ++s) {
        const double v = values[(b * channels + c) * spatial + s];
        sums_[c] += v, squares_[c] += v * v;
      }
  count_ += static_cast<double>(n * spatial);
  if (!last_micro_batch) return;
  std::vector<float> mean = running_mean.to(Device::cpu()).to_vector<float>(), var = running_var.to(Device::cpu()).to_vector<float>();
  for (int64_t c = 0; c < channels; ++c) {
    const double mu = sums_[c] / count_, variance = std::max(0.0, squares_[c] / count_ - mu * mu);
    mean[c] = static_cast<float>((1.0 - momentum) * mean[c] + momentum * mu);
    var[c] = static_cast<float>((1.0 - momentum) * var[c] + momentum * variance * count_ / (count_ - 1.0));
  }
  NoGradGuard no_grad;
  copy_(running_mean, from_vector(mean, {channels}).to(running_mean.device()));
  copy_(running_var, from_vector(var, {channels}).to(running_var.device()));
  sums_.clear(), squares_.clear(), count_ = 0;
}

Tensor GlobalAvgPool::forward(const Tensor& x) {
  if (x.dim() != 4) throw std::invalid_argument("GlobalAvgPool: input must be [N, C, H, W], got " + shape_str(x.shape()));
  return mean(x, {2, 3});
}

ResidualBlock::ResidualBlock(int64_t in_channels, int64_t out_channels, int64_t stride, Generator& g) {
  conv1 = register_module("conv1", std::make_shared<Conv2d>(in_channels, out_channels, 3, g, stride, 1, false));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(out_channels));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(out_channels, out_channels, 3, g, 1, 1, false));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(out_channels));
  if (stride != 1 || in_channels != out_channels) {
    shortcut_conv = register_module("shortcut_conv", std::make_shared<Conv2d>(in_channels, out_channels, 1, g, stride, 0, false));
    shortcut_bn = register_module("shortcut_bn", std::make_shared<BatchNorm2d>(out_channels));
  }
}

Tensor ResidualBlock::forward(const Tensor& x) {
  const Tensor h = (*bn2)((*conv2)(relu((*bn1)((*conv1)(x)))));
  const Tensor shortcut = shortcut_conv ? (*shortcut_bn)((*shortcut_conv)(x)) : x;
  return relu(add(h, shortcut));
}

ModelRecipe resnet_recipe(const ResNetConfig& c) {
  if (c.stages < 1 || c.blocks_per_stage < 1 || c.width < 1)
    throw std::invalid_argument("make_resnet: stages, blocks_per_stage and width must be positive");
  // Each layer's builder, by its place: the stem, the blocks with their channels and strides,
  // the pool and the classifier.
  std::vector<std::function<ModulePtr(Generator&)>> layers;
  ModelRecipe recipe;
  recipe.names.push_back("stem");
  layers.push_back([c](Generator& g) {
    return std::make_shared<Sequential>(std::initializer_list<ModulePtr>{
        std::make_shared<Conv2d>(c.in_channels, c.width, 3, g, 1, 1, false), std::make_shared<BatchNorm2d>(c.width),
        std::make_shared<Activation>(ActivationKind::ReLU)});
  });
  int64_t channels = c.width;
  for (int64_t stage = 0; stage < c.stages; ++stage) {
    const int64_t out_channels = c.width << stage;
    for (int64_t b = 0; b < c.blocks_per_stage; ++b) {
      const int64_t stride = stage > 0 && b == 0 ? 2 : 1;
      recipe.names.push_back("stage" + std::to_string(stage) + "_block" + std::to_string(b));
      layers.push_back([channels, out_channels, stride](Generator& g) {
        return std::make_shared<ResidualBlock>(channels, out_channels, stride, g);
      });
      channels = out_channels;
    }
  }
  recipe.names.push_back("pool");
  layers.push_back([](Generator&) { return std::make_shared<GlobalAvgPool>(); });
  recipe.names.push_back("classifier");
  layers.push_back([channels, c](Generator& g) { return std::make_shared<Linear>(channels, c.classes, g); });
  recipe.build_layer = [layers, seed = c.seed](size_t index, const Sequential&) {
    Generator g = layer_generator(seed, index);
    return layers.at(index)(g);
  };
  return recipe;
}

std::shared_ptr<Sequential> make_resnet(const ResNetConfig& config) { return resnet_recipe(config).build(); }

}  // namespace minipipe::nn
