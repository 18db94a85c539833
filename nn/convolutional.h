#pragma once
// Convolutional layers and a small ResNet (He et al. 2016), built as a Sequential of
// blocks so that a pipeline can cut it.
#include <memory>
#include <vector>

#include "autograd/convolution.h"
#include "nn/layers.h"
#include "nn/model_recipe.h"
#include "nn/sequential.h"

namespace minipipe::nn {

// Weight [out, in, k, k]; PyTorch's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, Generator& generator, int64_t stride = 1,
         int64_t padding = 0, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Conv2d"; }
  Tensor weight, bias;
  int64_t stride, padding;
};

// Per-channel batch normalisation with running statistics as buffers. In a pipeline the
// training statistics are those of one micro-batch (see docs). The running statistics move
// once per micro-batch, or, when the forward context asks for deferred_batch_norm, once per
// mini-batch by the statistics of all its micro-batches together.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, float momentum = 0.1f, float eps = 1e-5f);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "BatchNorm2d"; }
  Tensor weight, bias, running_mean, running_var;
  float momentum, eps;

 private:
  void add_to_deferred_statistics(const Tensor& x, bool last_micro_batch);
  std::vector<double> sums_, squares_;  // per channel, over the micro-batches so far
  double count_ = 0;
};

// The window of a pooling layer (square kernel, stride, padding).
class Pool2d : public Module {
 public:
  Pool2d(int64_t kernel, int64_t stride, int64_t padding) : kernel(kernel), stride(stride), padding(padding) {}
  int64_t kernel, stride, padding;
};

class MaxPool2d : public Pool2d {
 public:
  using Pool2d::Pool2d;
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel, stride, padding); }
  std::string type_name() const override { return "MaxPool2d"; }
};

class AvgPool2d : public Pool2d {
 public:
  using Pool2d::Pool2d;
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, kernel, stride, padding); }
  std::string type_name() const override { return "AvgPool2d"; }
};

// [N, C, H, W] -> [N, C]: the mean over all positions.
class GlobalAvgPool : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "GlobalAvgPool"; }
};

// relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is a 1x1 convolution
// with batch norm when the shape changes, the identity otherwise.
class ResidualBlock : public Module {
 public:
  ResidualBlock(int64_t in_channels, int64_t out_channels, int64_t stride, Generator& generator);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ResidualBlock"; }
  std::shared_ptr<Conv2d> conv1, conv2, shortcut_conv;
  std::shared_ptr<BatchNorm2d> bn1, bn2, shortcut_bn;
};

struct ResNetConfig {
  int64_t in_channels = 1;
  int64_t classes = 10;
  int64_t width = 16;             // channels of the first stage; doubled at each later stage
  int64_t blocks_per_stage = 1;
  int64_t stages = 3;
  uint64_t seed = 0;
};

// stem (conv3x3, bn, relu), stages of residual blocks (stride 2 from the second), global
// average pool, flatten, linear classifier; each layer from its own random streams
// (nn/model_recipe.h).
ModelRecipe resnet_recipe(const ResNetConfig& config);
std::shared_ptr<Sequential> make_resnet(const ResNetConfig& config);  // resnet_recipe(config).build()

}  // namespace minipipe::nn
