// Training steps per second of minipipe on the CPU (one thread unless --threads), for the models that
// compare_training.py also times in PyTorch: the default GPT of `minipipe train gpt`
// (dim 128, 4 layers, 4 heads, 16 x 128 tokens) and the digits ResNet of `minipipe train cnn`
// (width 16, 2 stages, batch 64 of 8x8 images). A step = forward, backward, AdamW update.
//
//   training_benchmark --model gpt|cnn [--steps N] [--warmup N] [--threads N]
//                      [--dim D --layers L --heads H --batch B --context T]   (gpt's shape)
// Prints one JSON object: {"framework": "minipipe", "model": ..., "steps_per_second": ...,
// "gemm_multiply_adds_per_step": ...}, the last counted by the CPU GEMM over the timed steps
// (compare_training.py divides it by a measured GEMM rate: the step's GEMM-bound limit).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/threads.h"
#include "nn/convolutional.h"
#include "nn/losses.h"
#include "nn/optim/optimizer.h"
#include "nn/transformer.h"
#include "tensor/factories.h"

using namespace minipipe;

int main(int argc, char** argv) {
  CLI::App app{"minipipe training throughput on the CPU"};
  std::string model_name = "gpt";
  int steps = 20, warmup = 3, threads = 1;
  int64_t dim = 128, layers = 4, heads = 4, batch = 16, context = 128;  // the default GPT of `minipipe train gpt`
  app.add_option("--model", model_name, "gpt or cnn")->check(CLI::IsMember({"gpt", "cnn"}));
  app.add_option("--steps", steps, "timed steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--threads", threads, "kernel threads (kernels/cpu/threads.h)")->check(CLI::Range(1, kernels::cpu::kMaxKernelThreads));
  app.add_option("--dim", dim, "gpt: width")->check(CLI::Range(8, 4096));
  app.add_option("--layers", layers, "gpt: Transformer blocks")->check(CLI::Range(1, 64));
  app.add_option("--heads", heads, "gpt: attention heads (dividing --dim)")->check(CLI::Range(1, 64));
  app.add_option("--batch", batch, "gpt: sequences per step")->check(CLI::Range(1, 1024));
  app.add_option("--context", context, "gpt: tokens per sequence")->check(CLI::Range(2, 8192));
  CLI11_PARSE(app, argc, argv);
  if (dim % heads != 0) {
    std::fprintf(stderr, "--heads %lld must divide --dim %lld\n", static_cast<long long>(heads), static_cast<long long>(dim));
    return 2;
  }
  kernels::cpu::KernelThreads kernel_threads(threads);

  Generator g(0);
  std::shared_ptr<nn::Sequential> model;
  Tensor inputs, targets;
  if (model_name == "gpt") {
    model = nn::make_gpt({.vocabulary = 256, .context = context, .dim = dim, .layers = layers, .heads = heads, .dropout = 0.0f});
    inputs = randint(0, 256, {batch, context}, g);
    targets = randint(0, 256, {batch, context}, g);
  } else {
    model = nn::make_resnet({.in_channels = 1, .classes = 10, .width = 16, .blocks_per_stage = 1, .stages = 2});
    inputs = rand({64, 1, 8, 8}, g);
    targets = randint(0, 10, {64}, g);
  }
  nn::AdamW optimizer(model->named_parameters(), {.lr = 1e-3f});
  auto step = [&] {
    const Tensor loss = nn::cross_entropy_loss((*model)(inputs), targets);
    loss.backward();
    optimizer.step();
    optimizer.zero_grad();
  };
  for (int i = 0; i < warmup; ++i) step();
  const int64_t multiply_adds_before = kernels::cpu::multiply_adds_done();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t multiply_adds = (kernels::cpu::multiply_adds_done() - multiply_adds_before) / steps;
  std::printf("{\"framework\": \"minipipe\", \"model\": \"%s\", \"threads\": %d, \"steps\": %d, "
              "\"steps_per_second\": %.4f, \"gemm_multiply_adds_per_step\": %lld}\n",
              model_name.c_str(), threads, steps, steps / seconds, static_cast<long long>(multiply_adds));
  return 0;
}
