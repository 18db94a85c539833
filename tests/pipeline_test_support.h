#pragma once
// What the executor suites share: a small GPT with dropout, its batches, and bitwise
// comparison of two training runs.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "nn/losses.h"
#include "nn/optim/optimizer.h"
#include "nn/transformer.h"
#include "pipeline/executor.h"
#include "tensor/factories.h"

namespace minipipe::testing {

inline nn::GPTConfig small_gpt() {
  return {.vocabulary = 31, .context = 8, .dim = 16, .layers = 4, .heads = 2, .dropout = 0.1f, .seed = 3};
}

// The mini-batch of a step: 8 sequences of 8 tokens, a pure function of the step.
inline datasets::Batch gpt_batch(int64_t step) {
  Generator g(100 + step);
  return {randint(0, 31, {8, 8}, g), randint(0, 31, {8, 8}, g), 0};
}

struct TrainingRun {
  std::vector<float> losses;  // per mini-batch
  std::map<std::string, Tensor> weights;
};

inline Tensor gpt_loss(const Tensor& logits, const Tensor& targets) { return nn::cross_entropy_loss(logits, targets); }

// `steps` AdamW steps of `model` through `pipe` (a synchronous pipeline over it), one
// mini-batch (`batch(step)`) per step.
inline TrainingRun train_steps(nn::Sequential& model, pipeline::Pipeline& pipe,
                               const std::function<datasets::Batch(int64_t)>& batch, int steps) {
  nn::AdamW optimizer(model.named_parameters(), {.lr = 1e-2f});
  TrainingRun run;
  for (int step = 0; step < steps; ++step) {
    run.losses.push_back(pipe.run(batch(step), step).loss);
    optimizer.step();
    optimizer.zero_grad();
  }
  run.weights = model.state_dict();
  return run;
}

// The same for a GPT through a synchronous pipeline of `stages` uniform stages.
inline TrainingRun train(const nn::GPTConfig& config, int stages, const pipeline::PipelineOptions& options,
                         const std::function<datasets::Batch(int64_t)>& batch, int steps) {
  auto model = nn::make_gpt(config);
  pipeline::Pipeline pipe(model, pipeline::partition_uniform(*model, stages * options.virtual_stages), options, gpt_loss);
  return train_steps(*model, pipe, batch, steps);
}

// The small GPT (dropout on, seed 7) on gpt_batch: with one stage and one micro-batch,
// ordinary training.
inline TrainingRun train(int stages, int micro_batches, const std::string& schedule, pipeline::Recompute recompute,
                         int steps = 10, int virtual_stages = 1) {
  pipeline::PipelineOptions options{micro_batches, schedule, recompute, {}, 7, false};
  options.virtual_stages = virtual_stages;
  return train(small_gpt(), stages, options, gpt_batch, steps);
}

inline void expect_identical(const TrainingRun& a, const TrainingRun& b, const std::string& what) {
  EXPECT_EQ(a.losses, b.losses) << what;
  for (const auto& [name, t] : a.weights)
    ASSERT_EQ(t.to_vector<float>(), b.weights.at(name).to_vector<float>()) << what << ": " << name;
}

}  // namespace minipipe::testing
