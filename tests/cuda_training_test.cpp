// Item 5 of the CUDA backend: training on cuda:0 gives the CPU's losses. Two copies of one
// model, one moved to the GPU, see the same batches and dropout keys for 50 steps; every
// step's loss must agree within 1e-4 relative (cuBLAS runs without TF32). Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/convolutional.h"
#include "nn/forward_context.h"
#include "nn/losses.h"
#include "nn/optim/optimizer.h"
#include "nn/transformer.h"
#include "pipeline/executor.h"
#include "pipeline/partition.h"
#include "tensor/factories.h"
#include "gpu_test_support.h"
#include "kernels/cuda/runtime.h"

namespace minipipe {
namespace {

using testing::kGpu;
using CudaTraining = testing::OnGpu;

struct Batch {
  Tensor inputs, targets;
};

// Trains a fresh model from make_model() on `device` for `steps` steps and returns the losses.
std::vector<float> train(const std::function<std::shared_ptr<nn::Module>()>& make_model,
                         const std::function<std::unique_ptr<nn::Optimizer>(nn::Module&)>& make_optimizer,
                         const std::function<Batch(int64_t step)>& batch_at, const Device& device, int steps) {
  const std::shared_ptr<nn::Module> model = make_model();
  model->to(device);
  model->train();
  const std::unique_ptr<nn::Optimizer> optimizer = make_optimizer(*model);
  std::vector<float> losses;
  for (int step = 0; step < steps; ++step) {
    const nn::ForwardContextGuard context({.seed = 5, .step = static_cast<uint64_t>(step)});
    const Batch batch = batch_at(step);
    const Tensor loss = nn::cross_entropy_loss((*model)(batch.inputs.to(device)), batch.targets.to(device));
    loss.backward();
    optimizer->step();
    optimizer->zero_grad();
    losses.push_back(loss.item());
  }
  return losses;
}

void expect_same_losses(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  ASSERT_EQ(gpu.size(), cpu.size());
  double worst = 0.0;  // printed, so that a run shows how much of the 1e-4 it used
  for (size_t step = 0; step < cpu.size(); ++step) {
    EXPECT_NEAR(gpu[step], cpu[step], 1e-4f * std::abs(cpu[step])) << "step " << step;
    worst = std::max(worst, std::abs(static_cast<double>(gpu[step]) - cpu[step]) / std::abs(cpu[step]));
  }
  std::printf("largest relative loss difference over %zu steps: %.2e\n", cpu.size(), worst);
  EXPECT_LT(cpu.back(), cpu.front()) << "the model did not learn, so the comparison shows little";
}

TEST_F(CudaTraining, AGptTrainsToTheCpuLossesFor50Steps) {
  // Embedding, layer norm, attention, GELU, dropout (Philox masks on both devices), cross
  // entropy and AdamW. Tokens follow a rule (next = 3 * token + 1 mod 61) the model can learn.
  const nn::GPTConfig config{.vocabulary = 61, .context = 24, .dim = 48, .layers = 2, .heads = 4, .dropout = 0.1f,
                             .seed = 3};
  const auto make_model = [&] { return std::static_pointer_cast<nn::Module>(nn::make_gpt(config)); };
  const auto make_optimizer = [](nn::Module& m) -> std::unique_ptr<nn::Optimizer> {
    return std::make_unique<nn::AdamW>(m.named_parameters(), nn::AdamWOptions{.lr = 3e-3f, .weight_decay = 0.1f});
  };
  const auto batch_at = [](int64_t step) {
    Generator g(100 + static_cast<uint64_t>(step));
    const Tensor first = randint(0, 61, {6, 1}, g);
    Tensor tokens = empty({6, 25}, DType::Int32);
    for (int64_t b = 0; b < 6; ++b) {
      int32_t token = first.data<int32_t>()[b];
      for (int64_t t = 0; t < 25; ++t, token = (3 * token + 1) % 61) tokens.data<int32_t>()[b * 25 + t] = token;
    }
    return Batch{tokens.narrow(1, 0, 24).contiguous(), tokens.narrow(1, 1, 24).contiguous()};
  };
  expect_same_losses(train(make_model, make_optimizer, batch_at, kGpu, 50),
                     train(make_model, make_optimizer, batch_at, Device::cpu(), 50));
}

TEST_F(CudaTraining, AResNetTrainsToTheCpuLossesFor50Steps) {
  // Convolution, batch norm (batch statistics and running averages), pooling, linear, SGD
  // with momentum. Labels are the quadrant holding an image's brightest pixel.
  const nn::ResNetConfig config{.in_channels = 2, .classes = 4, .width = 8, .blocks_per_stage = 1, .stages = 2,
                                .seed = 4};
  const auto make_model = [&] { return std::static_pointer_cast<nn::Module>(nn::make_resnet(config)); };
  const auto make_optimizer = [](nn::Module& m) -> std::unique_ptr<nn::Optimizer> {
    return std::make_unique<nn::SGD>(m.named_parameters(), nn::SgdOptions{.lr = 0.05f, .momentum = 0.9f});
  };
  const auto batch_at = [](int64_t step) {
    Generator g(200 + static_cast<uint64_t>(step));
    const Tensor images = randn({16, 2, 10, 10}, g);
    Tensor labels = empty({16}, DType::Int32);
    for (int64_t i = 0; i < 16; ++i) {
      const float* image = images.data<float>() + i * 200;
      int64_t brightest = 0;
      for (int64_t p = 1; p < 100; ++p)
        if (image[p] > image[brightest]) brightest = p;
      labels.data<int32_t>()[i] = static_cast<int32_t>((brightest / 10 >= 5) * 2 + (brightest % 10 >= 5));
    }
    return Batch{images, labels};
  };
  expect_same_losses(train(make_model, make_optimizer, batch_at, kGpu, 50),
                     train(make_model, make_optimizer, batch_at, Device::cpu(), 50));
}

// The GPT pipeline of the tests below, on stage_devices, for 20 steps. `reserved`, if given,
// gets the bytes the first stage's device holds after each step.
std::vector<float> train_gpt_pipeline(const std::vector<Device>& stage_devices,
                                      std::vector<int64_t>* reserved = nullptr) {
  auto model = nn::make_gpt({.vocabulary = 31, .context = 8, .dim = 32, .layers = 4, .heads = 2, .dropout = 0.1f,
                             .seed = 3});
  pipeline::Pipeline pipeline(model, pipeline::partition_uniform(*model, static_cast<int>(stage_devices.size())),
                              {4, "1f1b", pipeline::Recompute::ExceptLast, stage_devices, 7, false},
                              [](const Tensor& logits, const Tensor& targets) {
                                return nn::cross_entropy_loss(logits, targets);
                              });
  nn::AdamW optimizer(model->named_parameters(), {.lr = 1e-2f});
  std::vector<float> losses;
  for (int step = 0; step < 20; ++step) {
    Generator g(300 + static_cast<uint64_t>(step));
    const Tensor ids = randint(0, 31, {8, 8}, g);
    Tensor targets = ids.clone();  // a rule to learn: the target of token t is 3t + 1 mod 31
    for (int64_t i = 0; i < targets.numel(); ++i) targets.data<int32_t>()[i] = (3 * targets.data<int32_t>()[i] + 1) % 31;
    losses.push_back(pipeline.run({ids, targets, 0}, step).loss);
    optimizer.step();
    optimizer.zero_grad();
    if (reserved) reserved->push_back(memory_stats(stage_devices[0]).reserved_bytes);
  }
  return losses;
}

// Four stage threads on one GPU, each on its own stream: activations and gradients cross
// streams at every hand-off and are freed by the thread that received them.
// Every step allocates what the one before freed, so the caching allocator serves later
// steps from its cache and the memory taken from the GPU does not grow with the steps. (How
// many blocks each stage's stream keeps may still change by a few: which thread frees a
// block last depends on timing.)
TEST_F(CudaTraining, AFourStagePipelineOnOneGpuGivesTheCpuLosses) {
  std::vector<int64_t> reserved;
  expect_same_losses(train_gpt_pipeline(std::vector<Device>(4, kGpu), &reserved),
                     train_gpt_pipeline(std::vector<Device>(4, Device::cpu())));
  EXPECT_LT(reserved.back(), reserved[2] * 5 / 4) << "the cache grew from step to step";
}

// Stages on two GPUs (and the CPU): activations and gradients move by peer copies.
TEST_F(CudaTraining, APipelineAcrossTwoGpusAndTheCpuGivesTheCpuLosses) {
  std::string why_not;
  if (kernels::cuda::device_count(&why_not) < 2) GTEST_SKIP() << "needs two GPUs";
  const Device second = Device::cuda(1);
  expect_same_losses(train_gpt_pipeline({kGpu, second, Device::cpu(), second}),
                     train_gpt_pipeline(std::vector<Device>(4, Device::cpu())));
}

}  // namespace
}  // namespace minipipe
