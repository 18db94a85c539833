#pragma once
// The options of minipipe's optimizers (nn/optim/optimizer.h), beside them in minipipe::nn;
// the in-place update functions (nn/optim/optimizer_steps.h) take them too.
namespace minipipe::nn {

struct SgdOptions {
  float lr = 0.01f;
  float momentum = 0.0f;
  float dampening = 0.0f;
  float weight_decay = 0.0f;
  bool nesterov = false;
};

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.01f;
};

}  // namespace minipipe::nn
