// Fits a small multilayer perceptron to y = sin(x) with autograd and AdamW.
// It uses only minipipe's installed headers, so it also serves as the out-of-tree example
// (see README.md, "Using minipipe from your own program").
//
//   fit_sine [--steps N] [--seed S]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/elementwise.h"
#include "autograd/matmul.h"
#include "autograd/node.h"
#include "nn/optim/optimizer_steps.h"
#include "autograd/reduction.h"
#include "tensor/factories.h"

using namespace minipipe;

struct Layer {
  Tensor weight, bias, exp_avg_w, exp_avg_sq_w, exp_avg_b, exp_avg_sq_b;
  Layer(int64_t in, int64_t out, Generator& g)
      : weight(randn({in, out}, g, 0.0f, 1.0f / std::sqrt(static_cast<float>(in))).set_requires_grad()),
        bias(zeros({out}).set_requires_grad()),
        exp_avg_w(zeros({in, out})), exp_avg_sq_w(zeros({in, out})),
        exp_avg_b(zeros({out})), exp_avg_sq_b(zeros({out})) {}
  Tensor operator()(const Tensor& x) const { return matmul(x, weight) + bias; }
  void step(const nn::AdamWOptions& options, int64_t t) {
    adamw_step_(weight, weight.grad(), exp_avg_w, exp_avg_sq_w, options, t);
    adamw_step_(bias, bias.grad(), exp_avg_b, exp_avg_sq_b, options, t);
    weight.zero_grad();
    bias.zero_grad();
  }
};

int main(int argc, char** argv) {
  int steps = 2000;
  uint64_t seed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--steps" && i + 1 < argc) {
      steps = std::atoi(argv[++i]);
      if (steps <= 0) {
        std::fprintf(stderr, "fit_sine: --steps must be a positive integer\n");
        return 2;
      }
    } else if (flag == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: fit_sine [--steps N] [--seed S]\n");
      return flag == "--help" || flag == "-h" ? 0 : 2;
    }
  }

  // 256 points of sin on [-pi, pi].
  const Tensor x = arange(-3.14159265f, 3.14159265f, 6.2831853f / 256).reshape({-1, 1});
  std::vector<float> targets;
  for (float v : x.to_vector<float>()) targets.push_back(std::sin(v));
  const Tensor y = from_vector(targets, x.shape());

  Generator generator(seed);
  std::vector<Layer> layers{Layer(1, 32, generator), Layer(32, 32, generator), Layer(32, 1, generator)};
  const nn::AdamWOptions options{.lr = 0.01f, .weight_decay = 0.0f};
  float loss_value = 0.0f;
  for (int step = 1; step <= steps; ++step) {
    Tensor h = x;
    for (size_t i = 0; i < layers.size(); ++i) h = i + 1 < layers.size() ? tanh(layers[i](h)) : layers[i](h);
    const Tensor loss = mean(pow(h - y, 2.0f));
    loss.backward();
    {
      NoGradGuard no_grad;
      for (Layer& layer : layers) layer.step(options, step);
    }
    loss_value = loss.item();
    if (step == 1 || step % (steps / 10 > 0 ? steps / 10 : 1) == 0)
      std::printf("step %5d  mse %.6f\n", step, loss_value);
  }
  std::printf("final mse %.6f after %d steps (%s)\n", loss_value, steps, loss_value < 0.01f ? "fit" : "not yet fit");
  return 0;
}
