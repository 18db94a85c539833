// Trains a two-stage pipeline of a small MLP for a few steps and checks that the loss falls:
// enough to show that the headers, the library and its dependencies all came through.
#include <cstdio>
#include <memory>

#include "minipipe.h"  // the whole API

using namespace minipipe;

int main() {
  Generator g(0);
  auto model = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Linear>(4, 16, g), std::make_shared<nn::Activation>(nn::ActivationKind::Tanh),
      std::make_shared<nn::Linear>(16, 1, g)});
  pipeline::PipelineOptions options;
  options.micro_batches = 2;
  options.schedule = "1f1b";
  pipeline::Pipeline pipe(model, pipeline::partition_uniform(*model, 2), options, nn::mse_loss);
  nn::AdamW optimizer(model->named_parameters(), {.lr = 1e-2f});
  const Tensor x = randn({32, 4}, g);
  const Tensor y = sum(x, {1}, true);
  float first = 0, last = 0;
  for (int step = 0; step < 50; ++step) {
    last = pipe.run({x, y, 0}, step).loss;
    if (step == 0) first = last;
    optimizer.step();
    optimizer.zero_grad();
  }
  std::printf("minipipe %s: loss %.4f -> %.4f\n", MINIPIPE_VERSION, first, last);
  return last < first / 4 ? 0 : 1;
}
