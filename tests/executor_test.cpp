// pipeline/: partitioning and the executor: the same losses and weights for any number of
// stages, schedule and recomputation mode; activation memory per stage; failures.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <utility>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "autograd/elementwise.h"
#include "autograd/reduction.h"
#include "kernels/cpu/threads.h"
#include "nn/forward_context.h"
#include "nn/losses.h"
#include "nn/optim/optimizer.h"
#include "nn/skip.h"
#include "nn/transformer.h"
#include "nn/convolutional.h"
#include "pipeline/executor.h"
#include "pipeline/schedule_csv.h"
#include "pipeline/status.h"
#include "pipeline/trainer.h"
#include "pipeline/zb_auto.h"
#include "tensor/factories.h"
#include "pipeline_test_support.h"
#include "test_helpers.h"

namespace minipipe::pipeline {
namespace {

using testing::expect_identical;
using testing::gpt_batch;
using testing::gpt_loss;
using testing::small_gpt;
using testing::train;
using testing::train_steps;
using testing::TrainingRun;

// --plan auto: PipeDream's planner cuts the model from measured layer times (since the
// Trainer's refactor a braced PlannerOptions had zeroed the link and every plan failed). What
// it chose is the only thing timing decides: training equals the partition it chose.
TEST(Trainer, PlanAutoTrainsLikeThePartitionItChose) {
  auto options = [](const std::string& partition, bool plan) {
    TrainerOptions o;
    o.schedule.name = "1f1b";
    o.schedule.stages = 2;
    o.schedule.micro_batches = 4;
    o.partition = partition;
    o.plan_stages = plan;
    o.optimizer = {[](nn::NamedTensors p) { return std::make_unique<nn::AdamW>(std::move(p), nn::AdamWOptions{.lr = 1e-2f}); },
                   {nn::LearningRateSchedule::Kind::Constant, 1e-2f}, 1.0f};
    return o;
  };
  const nn::ModelRecipe recipe = nn::gpt_recipe(testing::small_gpt());
  const Tensor sample = gpt_batch(0).inputs.narrow(0, 0, 2);
  Trainer planned(recipe, gpt_loss, sample, options("uniform", true));
  const std::vector<int>& balance = planned.pipeline().plan().layers_per_stage;
  ASSERT_EQ(balance.size(), 2u);
  EXPECT_NE(planned.pipeline().plan().method.find("PipeDream's planner"), std::string::npos) << planned.pipeline().plan().method;
  Trainer chosen(recipe, gpt_loss, sample, options(std::to_string(balance[0]) + "," + std::to_string(balance[1]), false));
  const std::vector<datasets::Batch> batches{gpt_batch(0), gpt_batch(1), gpt_batch(2)};
  EXPECT_EQ(planned.train(batches, 0), chosen.train(batches, 0));
}

// --data-parallel in one process: 2 replicas of a 2-stage pipeline, each on half of every
// mini-batch, average their gradients and take one step. One pipeline on the whole batch adds
// the same micro-batch gradients in another order, so the two agree to float rounding.
TEST(Trainer, DataParallelReplicasInThreadsTrainLikeOnePipelineOnTheWholeBatch) {
  auto options = [](int replicas) {
    TrainerOptions o;
    o.schedule.name = "1f1b";
    o.schedule.stages = 2;
    o.schedule.micro_batches = 4 / replicas;  // the same micro-batches: 4 of 2 rows
    o.data_parallel = replicas;
    // Plain SGD, no clipping: a step as large as the gradient, so a sum for a mean would show.
    o.optimizer = {[](nn::NamedTensors p) { return std::make_unique<nn::SGD>(std::move(p), nn::SgdOptions{.lr = 0.5f}); },
                   {nn::LearningRateSchedule::Kind::Constant, 0.5f}, 0.0f};
    return o;
  };
  const nn::ModelRecipe recipe = nn::gpt_recipe(testing::small_gpt());
  const Tensor sample = gpt_batch(0).inputs.narrow(0, 0, 2);
  Trainer one(recipe, gpt_loss, sample, options(1)), replicated(recipe, gpt_loss, sample, options(2));
  const std::vector<datasets::Batch> batches{gpt_batch(0), gpt_batch(1), gpt_batch(2)};
  const std::vector<float> expected = one.train(batches, 0), losses = replicated.train(batches, 0);
  ASSERT_EQ(losses.size(), expected.size());
  for (size_t i = 0; i < losses.size(); ++i) EXPECT_NEAR(losses[i], expected[i], 1e-5f * expected[i]) << "step " << i;
  const auto trained = replicated.model()->state_dict(), reference = one.model()->state_dict();
  for (const auto& [name, value] : reference) {
    const std::vector<float> a = trained.at(name).to_vector<float>(), b = value.to_vector<float>();
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4f) << name << "[" << i << "]";
  }
  // A model without a way to build it again has nothing for the second replica to run on.
  EXPECT_THROW(
      try { Trainer(recipe.build(), gpt_loss, sample, options(2)); } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("model_factory"), std::string::npos) << e.what();
        throw;
      },
      std::invalid_argument);
}

TEST(Executor, SameLossesAndWeightsBitForBitForAnyStagesScheduleAndRecompute) {
  const TrainingRun reference = train(1, 4, "gpipe", Recompute::Never);
  // gpt_batch's targets are random, so the loss need not fall in 10 steps: the check that the
  // reference trained at all is that its weights moved.
  EXPECT_NE(nn::make_gpt(testing::small_gpt())->state_dict().at("block0.mlp.expand.weight").to_vector<float>(),
            reference.weights.at("block0.mlp.expand.weight").to_vector<float>());
  for (int stages : {1, 2, 3, 4})
    for (const char* schedule : {"gpipe", "1f1b", "zb-h1", "zb-h2"})  // zb: backwards split into B and W
      for (Recompute recompute : {Recompute::Never, Recompute::Always, Recompute::ExceptLast})
        expect_identical(reference, train(stages, 4, schedule, recompute),
                         "K=" + std::to_string(stages) + " " + schedule + " recompute " + recompute_name(recompute));
}

// A schedule is a value a Pipeline accepts: 1F1B for K = 2, M = 2 written out instruction by
// instruction (no generator), which trains like one device; and the same with one stage's
// send and receive swapped, which the validator refuses before anything runs.
TEST(Executor, AHandWrittenScheduleTrainsLikeOneDeviceAndABrokenOneIsRefused) {
  using enum Op;
  auto hand_written = [] {
    Schedule s;
    s.name = "hand-written 1f1b";
    s.stages = 2;
    s.micro_batches = 2;
    s.programs = {
        {{Forward, 0}, {SendActivation, 0}, {Forward, 1}, {SendActivation, 1}, {ReceiveGradient, 0}, {Backward, 0},
         {ReceiveGradient, 1}, {Backward, 1}, {OptimizerStep}},
        {{ReceiveActivation, 0}, {Forward, 0}, {Backward, 0}, {SendGradient, 0}, {ReceiveActivation, 1}, {Forward, 1},
         {Backward, 1}, {SendGradient, 1}, {OptimizerStep}},
    };
    return s;
  };
  auto loss = gpt_loss;
  const TrainingRun reference = train(1, 2, "gpipe", Recompute::Never, 5);
  auto model = nn::make_gpt(small_gpt());
  PipelineOptions options{.seed = 7};  // micro-batches and the schedule come from the schedule
  Pipeline pipe(model, partition_uniform(*model, 2), hand_written(), options, loss);
  EXPECT_EQ(pipe.schedule().name, "hand-written 1f1b");
  expect_identical(reference, train_steps(*model, pipe, gpt_batch, 5), "the hand-written 1F1B");

  Schedule broken = hand_written();
  std::swap(broken.programs[1][2], broken.programs[1][3]);  // stage 1 sends micro-batch 0's gradient before its backward
  EXPECT_THROW_WITH(Pipeline(nn::make_gpt(small_gpt()), partition_uniform(*model, 2), broken, options, loss), "stage 1",
                    "SendGradient of micro-batch 0 must come after the backward");
  EXPECT_THROW_WITH(Pipeline(nn::make_gpt(small_gpt()), partition_uniform(*model, 3), hand_written(), options, loss),
                    "runs 2 pieces", "cuts it into 3");
}

// PyTorch's schedule files (pipeline/schedule_csv.h), written here by hand in its format: a
// looped interleaved order and a V-shaped one (rank 0 holds pieces 0 and 3, rank 1 pieces 1
// and 2, so activations go down and back up), each training like one device in every
// recompute mode.
TEST(Executor, PyTorchScheduleFilesWithLoopedAndVPlacementTrainLikeOneDevice) {
  const char* looped =  // pieces 0, 2 on rank 0; 1, 3 on rank 1
      "0F0,0F1,2F0,2F1,,,2B0,2B1,0B0,0B1\n"
      ",1F0,1F1,3F0,3B0,3F1,3B1,1B0,1B1\n";
  const char* v =  // pieces 0, 3 on rank 0; 1, 2 on rank 1
      "0F0,0F1,,,3F0,3B0,3F1,3B1,,,0B0,0B1\n"
      ",1F0,1F1,2F0,2F1,,2B0,2B1,1B0,1B1\n";
  const TrainingRun reference = train(1, 2, "gpipe", Recompute::Never, 5);
  for (const char* text : {looped, v})
    for (Recompute recompute : {Recompute::Never, Recompute::Always, Recompute::ExceptLast}) {
      const Schedule schedule = schedule_from_csv(text, text == v ? "v" : "looped");
      EXPECT_EQ(schedule.placement, text == v ? Placement::V : Placement::Looped);
      auto model = nn::make_gpt(small_gpt());
      Pipeline pipe(model, partition_uniform(*model, 4), schedule, {.recompute = recompute, .seed = 7}, gpt_loss);
      expect_identical(reference, train_steps(*model, pipe, gpt_batch, 5), schedule.name + " recompute " + recompute_name(recompute));
    }
}

// Interleaved 1F1B (Narayanan et al. SC 2021): the model in K x v pieces, stage s running
// pieces s, s + K, ...; the same micro-batches in another order, so the same bits.
TEST(Executor, InterleavedTrainsTheGptBitForBitLikeOneDevice) {
  struct Case {
    int stages, virtual_stages, micro_batches;
  };
  for (const Case& c : {Case{2, 2, 4}, Case{2, 3, 4}, Case{3, 2, 6}}) {
    const TrainingRun reference = train(1, c.micro_batches, "gpipe", Recompute::Never);
    for (Recompute recompute : {Recompute::Never, Recompute::Always, Recompute::ExceptLast})
      expect_identical(reference, train(c.stages, c.micro_batches, "interleaved", recompute, 10, c.virtual_stages),
                       "K=" + std::to_string(c.stages) + " v=" + std::to_string(c.virtual_stages) + " M=" +
                           std::to_string(c.micro_batches) + " recompute " + recompute_name(recompute));
  }
}

// The V-shaped schedules (zb-v, v-half, v-min, dualpipev): two chunks per stage in a V,
// backwards split into B and W (dualpipev: some whole, some forwards paired with backwards);
// K = 2 and 3 (the small GPT has 6 layers, a V of K = 3 takes one each).
TEST(Executor, VShapedSchedulesTrainTheGptBitForBitLikeOneDevice) {
  for (const auto& [stages, micro_batches] : std::vector<std::pair<int, int>>{{2, 4}, {3, 8}}) {  // dualpipev: M >= 2K
    const TrainingRun reference = train(1, micro_batches, "gpipe", Recompute::Never, 4);
    for (const char* schedule : {"zb-v", "v-half", "v-min", "dualpipev"})
      for (Recompute recompute : {Recompute::Never, Recompute::Always, Recompute::ExceptLast})
        expect_identical(reference, train(stages, micro_batches, schedule, recompute, 4, 2),
                         std::string(schedule) + " K=" + std::to_string(stages) + " recompute " + recompute_name(recompute));
  }
}

// zb-auto: zero bubble placed from costs where stage 1's backward weighs three times stage 0's
// and W is a quarter of it; whatever order the costs give, the same bits as one device.
TEST(Executor, ZbAutoTrainsTheGptBitForBitLikeOneDevice) {
  CostModel costs = CostModel::uniform(3, 1.0, 2.0);
  costs.backward = {2.0, 6.0, 2.0};
  costs.backward_weight = {0.5, 1.5, 0.5};
  const TrainingRun reference = train(1, 8, "gpipe", Recompute::Never, 5);
  for (int max_in_flight : {0, 2})
    for (Recompute recompute : {Recompute::Never, Recompute::Always}) {
      auto model = nn::make_gpt(small_gpt());
      PipelineOptions options{.recompute = recompute, .seed = 7};
      Pipeline pipe(model, partition_uniform(*model, 3), zb_auto_schedule(3, 8, costs, max_in_flight), options, gpt_loss);
      expect_identical(reference, train_steps(*model, pipe, gpt_batch, 5),
                       "zb-auto, at most " + std::to_string(max_in_flight) + " in flight, recompute " + recompute_name(recompute));
    }
}

// The CNN (convolutions, BatchNorm with its running statistics, pooling) through 1F1B,
// interleaved and zero-bubble stages, against one device with the same micro-batches.
TEST(Executor, OneFOneBInterleavedAndZeroBubbleTrainTheCnnBitForBitLikeOneDevice) {
  auto cnn_run = [](int pieces, const PipelineOptions& options) {
    auto model = nn::make_resnet({.in_channels = 1, .classes = 10, .width = 4, .blocks_per_stage = 1, .stages = 2, .seed = 5});
    Pipeline pipe(model, partition_uniform(*model, pieces), options,
                  [](const Tensor& logits, const Tensor& labels) { return nn::cross_entropy_loss(logits, labels); });
    nn::AdamW optimizer(model->named_parameters(), {.lr = 1e-2f});
    TrainingRun run;
    for (int step = 0; step < 5; ++step) {
      Generator g(200 + step);
      const datasets::Batch batch{randn({8, 1, 8, 8}, g), randint(0, 10, {8}, g), 0};
      run.losses.push_back(pipe.run(batch, step).loss);
      optimizer.step();
      optimizer.zero_grad();
    }
    run.weights = model->state_dict();  // buffers too: BatchNorm's running statistics
    return run;
  };
  const TrainingRun reference = cnn_run(1, {4, "gpipe", Recompute::Never, {}, 7, false});
  for (Recompute recompute : {Recompute::Never, Recompute::Always, Recompute::ExceptLast}) {
    for (const char* schedule : {"1f1b", "zb-h1", "zb-h2"})
      expect_identical(reference, cnn_run(2, {4, schedule, recompute, {}, 7, false}),
                       std::string(schedule) + " " + recompute_name(recompute));
    PipelineOptions interleaved{4, "interleaved", recompute, {}, 7, false};
    interleaved.virtual_stages = 2;
    expect_identical(reference, cnn_run(4, interleaved), std::string("interleaved ") + recompute_name(recompute));
  }
}

// torchgpipe's deferred BatchNorm: with 4 micro-batches through 2 stages, the running
// statistics after a step are those one device computes from the whole mini-batch. The
// stem's BatchNorm is compared: it sees the same values either way, while every later one
// sees activations normalised by micro-batch statistics upstream, which are not the whole
// batch's. Not bit for bit: one device adds the whole batch's values in float lanes, the
// deferral adds the micro-batches' sums in double, so they agree to float rounding.
TEST(Executor, DeferredBatchNormMovesRunningStatisticsByTheWholeMiniBatch) {
  auto running_statistics = [](int stages, int micro_batches, bool deferred, Recompute recompute) {
    auto model = nn::make_resnet({.in_channels = 1, .classes = 10, .width = 4, .blocks_per_stage = 1, .stages = 2, .seed = 5});
    PipelineOptions options{micro_batches, "1f1b", recompute, {}, 7, false};
    options.deferred_batch_norm = deferred;
    Pipeline pipe(model, partition_uniform(*model, stages), options,
                  [](const Tensor& logits, const Tensor& labels) { return nn::cross_entropy_loss(logits, labels); });
    Generator g(200);
    const datasets::Batch batch{randn({16, 1, 8, 8}, g), randint(0, 10, {16}, g), 0};
    pipe.run(batch, 0);
    std::map<std::string, std::vector<float>> statistics;
    for (const auto& [name, t] : model->named_buffers()) statistics[name] = t.to_vector<float>();
    return statistics;
  };
  auto whole = running_statistics(1, 1, false, Recompute::Never);
  std::erase_if(whole, [](const auto& entry) { return entry.first.rfind("stem.", 0) != 0; });
  ASSERT_EQ(whole.size(), 2u);  // the stem BatchNorm's running mean and variance
  for (Recompute recompute : {Recompute::Never, Recompute::Always}) {
    const auto deferred = running_statistics(2, 4, true, recompute);
    for (const auto& [name, values] : whole)
      for (size_t i = 0; i < values.size(); ++i)
        ASSERT_NEAR(deferred.at(name)[i], values[i], 1e-6f * (1 + std::abs(values[i]))) << name << "[" << i << "]";
  }
  // Without the deferral the statistics move once per micro-batch, by each one's statistics.
  const auto per_micro_batch = running_statistics(2, 4, false, Recompute::Never);
  int differing = 0;
  for (const auto& [name, values] : whole)
    for (size_t i = 0; i < values.size(); ++i) differing += std::abs(per_micro_batch.at(name)[i] - values[i]) > 1e-4f;
  EXPECT_GT(differing, 0);
}

TEST(Executor, MicroBatchingMatchesOneDeviceWithTheWholeBatch) {
  const TrainingRun whole = train(1, 1, "gpipe", Recompute::Never), micro = train(4, 4, "1f1b", Recompute::Never);
  for (size_t i = 0; i < whole.losses.size(); ++i) EXPECT_NEAR(micro.losses[i], whole.losses[i], 1e-5f) << "step " << i;
  // AdamW divides by the root of the second moment, which magnifies rounding differences in
  // near-zero gradients; after 10 steps weights differ by up to about 1e-5.
  for (const auto& [name, t] : whole.weights) testing::expect_same_values(micro.weights.at(name), t, 1e-4f, 1e-4f);
}

// A GPT whose head reuses the token embedding (GPT-2's tied weights), cut so that the two
// sit on different stages: each stage adds its share of the gradient, and run() sums them.
TEST(Executor, TiedEmbeddingAcrossStagesTrainsLikeOneDevice) {
  nn::GPTConfig config = small_gpt();
  config.tie_embeddings = true;
  auto tied = nn::make_gpt(config);
  auto head = std::dynamic_pointer_cast<nn::LanguageModelHead>((*tied)[tied->size() - 1]);
  auto embedding = std::dynamic_pointer_cast<nn::TokenAndPositionEmbedding>((*tied)[0]);
  ASSERT_EQ(head->logits->weight.impl(), embedding->tokens->weight.impl());
  EXPECT_EQ(tied->parameter_count() + config.vocabulary * config.dim, nn::make_gpt(small_gpt())->parameter_count());
  EXPECT_FALSE(tied->state_dict().count("head.logits.weight"));  // listed once, by its first name

  auto run = [&](int stages, int micro_batches, const char* schedule, Recompute recompute) {
    PipelineOptions options{micro_batches, schedule, recompute, {}, 7, false};
    return train(config, stages, options, gpt_batch, 6);
  };
  // One micro-batch: the tied gradient is the embedding's share plus the head's, one
  // addition on one device as in the pipeline, so the same bits.
  const TrainingRun one_device = run(1, 1, "gpipe", Recompute::Never);
  for (int stages : {2, 3, 6})
    for (Recompute recompute : {Recompute::Never, Recompute::Always})
      expect_identical(one_device, run(stages, 1, "1f1b", recompute),
                       "M=1 K=" + std::to_string(stages) + " recompute " + recompute_name(recompute));
  // Four micro-batches: one device adds head, embedding, head, embedding, ... into one
  // gradient; the pipeline adds the embedding's four, the head's four, then the two sums. The
  // order of the additions differs, so the values agree to rounding (AdamW magnifies it in
  // near-zero gradients, as in MicroBatchingMatchesOneDeviceWithTheWholeBatch).
  const TrainingRun micro_batched = run(1, 4, "gpipe", Recompute::Never);
  for (const char* schedule : {"gpipe", "1f1b", "zb-h1"}) {
    const TrainingRun pipelined = run(3, 4, schedule, Recompute::Never);
    for (size_t i = 0; i < pipelined.losses.size(); ++i)
      EXPECT_NEAR(pipelined.losses[i], micro_batched.losses[i], 1e-5f) << schedule << " step " << i;
    for (const auto& [name, t] : micro_batched.weights)
      testing::expect_same_values(pipelined.weights.at(name), t, 1e-4f, 1e-4f);
  }
  // Without the head's share the tied weight would train differently: the sum is needed.
  const TrainingRun untied = train(small_gpt(), 3, PipelineOptions{1, "1f1b", Recompute::Never, {}, 7, false}, gpt_batch, 6);
  EXPECT_NE(untied.losses.back(), one_device.losses.back());
}

TEST(Executor, TiedParametersNeedASynchronousScheduleOnOneDevice) {
  nn::GPTConfig config = small_gpt();
  config.tie_embeddings = true;
  auto model = nn::make_gpt(config);
  auto loss = [](const Tensor& logits, const Tensor& targets) { return nn::cross_entropy_loss(logits, targets); };
  Pipeline pipe(model, partition_uniform(*model, 2), PipelineOptions{2, "1f1b"}, loss);
  ASSERT_EQ(pipe.tied_parameters().size(), 1u);
  EXPECT_EQ(pipe.tied_parameters()[0].name, "embedding.tokens.weight");
  EXPECT_EQ(pipe.tied_parameters()[0].stages, (std::vector<int>{0, 1}));
  pipe.set_optimizer_step([](int, int, uint64_t) {});
  EXPECT_THROW_WITH(pipe.run(gpt_batch(0), 0), "embedding.tokens.weight", "step the optimizer after run()");
  EXPECT_THROW_WITH(Pipeline(model, partition_uniform(*model, 2), PipelineOptions{1, "pipedream"}, loss),
                    "held by stages 0 and 1", "untie it");
}

// Records whether a skip tensor was in its thread's store when it ran (on one device the
// stashed tensor waits there until its pop; in a pipeline it must not pass through).
class SkipProbe : public nn::Module {
 public:
  Tensor forward(const Tensor& x) override {
    if (!nn::skip_store().empty()) saw_a_skip = true;
    return x;
  }
  std::string type_name() const override { return "SkipProbe"; }
  std::atomic<bool> saw_a_skip{false};
};

// A skip from layer 2 to layer 8, with dropout on the main path and the probe between; cut
// {3, 3, 2, 2} it jumps from stage 0 to stage 3.
std::shared_ptr<nn::Sequential> skip_model(std::shared_ptr<SkipProbe>& probe) {
  Generator g(11);
  auto tanh = [] { return std::make_shared<nn::Activation>(nn::ActivationKind::Tanh); };
  probe = std::make_shared<SkipProbe>();
  return std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Linear>(6, 12, g), tanh(), std::make_shared<nn::SkipStash>("around"),
      std::make_shared<nn::Linear>(12, 12, g), std::make_shared<nn::Dropout>(0.2f, 1), probe,
      std::make_shared<nn::Linear>(12, 12, g), tanh(), std::make_shared<nn::SkipPop>("around"),
      std::make_shared<nn::Linear>(12, 3, g)});
}

struct SkipRun {
  TrainingRun run;
  bool probe_saw_a_skip;
};

SkipRun train_with_skip(std::vector<int> balance, PipelineOptions options) {
  std::shared_ptr<SkipProbe> probe;
  auto model = skip_model(probe);
  Pipeline pipe(model, partition_explicit(*model, balance), options, nn::mse_loss);
  nn::AdamW optimizer(model->named_parameters(), {.lr = 1e-2f});
  SkipRun out;
  for (int step = 0; step < 6; ++step) {
    Generator g(50 + step);
    out.run.losses.push_back(pipe.run({randn({8, 6}, g), randn({8, 3}, g), 0}, step).loss);
    optimizer.step();
    optimizer.zero_grad();
  }
  out.run.weights = model->state_dict();
  out.probe_saw_a_skip = probe->saw_a_skip;
  return out;
}

// torchgpipe's portals: the stashed tensor goes from the stage that stashes it straight to the
// one that pops it, its gradient straight back; the sums of two gradients (the skip's and
// the main path's) are single additions either way, so the bits are one device's.
TEST(Executor, SkipConnectionsAcrossStagesTravelDirectlyAndTrainLikeOneDevice) {
  const SkipRun one_device = train_with_skip({10}, PipelineOptions{4, "gpipe", Recompute::Never, {}, 7, false});
  EXPECT_TRUE(one_device.probe_saw_a_skip);  // the probe can tell
  EXPECT_LT(one_device.run.losses.back(), one_device.run.losses.front());
  for (const char* schedule : {"gpipe", "1f1b", "zb-h1"})
    for (Recompute recompute : {Recompute::Never, Recompute::Always}) {
      const SkipRun pipelined = train_with_skip({3, 3, 2, 2}, PipelineOptions{4, schedule, recompute, {}, 7, false});
      const std::string what = std::string(schedule) + " recompute " + recompute_name(recompute);
      expect_identical(one_device.run, pipelined.run, what);
      EXPECT_FALSE(pipelined.probe_saw_a_skip) << what << ": the skip passed through the stage in between";
    }
  PipelineOptions interleaved{4, "interleaved", Recompute::Never, {}, 7, false};
  interleaved.virtual_stages = 2;  // pieces 0 and 3 on stage 0 and stage 1
  expect_identical(one_device.run, train_with_skip({3, 3, 2, 2}, interleaved).run, "interleaved");

  std::shared_ptr<SkipProbe> probe;
  auto model = skip_model(probe);
  Pipeline pipe(model, partition_explicit(*model, {3, 3, 2, 2}), PipelineOptions{2, "1f1b"}, nn::mse_loss);
  ASSERT_EQ(pipe.skip_routes().size(), 1u);
  EXPECT_EQ(pipe.skip_routes()[0].name, "around");
  EXPECT_EQ(pipe.skip_routes()[0].from_piece, 0);
  EXPECT_EQ(pipe.skip_routes()[0].to_piece, 3);
}

TEST(Executor, SkipConnectionsThatDoNotPairUpAreRefused) {
  Generator g(1);
  auto build = [&](std::initializer_list<nn::ModulePtr> layers) { return std::make_shared<nn::Sequential>(layers); };
  auto linear = [&] { return std::make_shared<nn::Linear>(4, 4, g); };
  auto stash = [](const char* name) { return std::make_shared<nn::SkipStash>(name); };
  auto pop = [](const char* name) { return std::make_shared<nn::SkipPop>(name); };
  auto make = [](const std::shared_ptr<nn::Sequential>& model) {
    return Pipeline(model, partition_uniform(*model, 2), PipelineOptions{1, "gpipe"}, nn::mse_loss);
  };
  EXPECT_THROW_WITH(make(build({linear(), pop("a"), linear(), stash("a")})), "pops skip 'a'", "put a SkipStash 'a' earlier");
  EXPECT_THROW_WITH(make(build({stash("a"), linear(), linear(), linear()})), "never pops it", "add a SkipPop 'a'");
  EXPECT_THROW_WITH(make(build({stash("a"), stash("a"), pop("a"), linear()})), "stashes skip 'a' twice");
  // On one device, the store says the same.
  auto lone_pop = build({linear(), pop("b")});
  EXPECT_THROW_WITH(lone_pop->forward(ones({2, 4})), "SkipPop 'b'", "nothing is stashed under that name");
}

// An injected link delays delivery by its latency plus bytes over bandwidth, one message at
// a time (only lower bounds are checked: a loaded machine may add to them), and changes no
// result.
TEST(Executor, AnInjectedLinkDelaysMessagesAndChangesNoResult) {
  LinkChannel link(std::make_unique<QueueChannel>(), LinkModel{1e6, 0.01});  // 1 MB/s, 10 ms
  const Tensor payload = zeros({2500});                                      // 10 kB: 10 ms at 1 MB/s
  const auto start = std::chrono::steady_clock::now();
  for (int m = 0; m < 2; ++m) link.send({m, 0, 0, payload, kernels::WorkMark(), -1});
  link.receive(0, 0, 0);
  const double first = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  link.receive(1, 0, 0);
  const double second = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(first, 0.020);   // 10 ms on the wire, 10 ms of latency
  EXPECT_GE(second, 0.030);  // waited for the first to cross
  PipelineOptions slow{4, "1f1b", Recompute::Never, {}, 7, false};
  slow.link = {5e8, 1e-4};
  expect_identical(train(2, 4, "1f1b", Recompute::Never, 3), testing::train(small_gpt(), 2, slow, gpt_batch, 3), "slow link");
}

TEST(Executor, ForwardRunsTheStagesInOrderLikeTheWholeModel) {
  auto model = nn::make_gpt(small_gpt());
  model->eval();  // no dropout: the two passes must agree exactly
  Pipeline pipeline(model, partition_uniform(*model, 3), {2, "1f1b", Recompute::Never, {}, 0, false},
                    [](const Tensor& logits, const Tensor& targets) { return nn::cross_entropy_loss(logits, targets); });
  const Tensor ids = gpt_batch(0).inputs;
  testing::expect_same_values(pipeline.forward(ids), (*model)(ids), 0.0f, 0.0f);
}

// A deep stack of Linear + Tanh layers whose activations dominate stage 0's memory.
std::shared_ptr<nn::Sequential> tanh_stack(int layers, int64_t width) {
  Generator g(0);
  auto model = std::make_shared<nn::Sequential>();
  for (int i = 0; i < layers; ++i) {
    model->add(std::make_shared<nn::Linear>(width, width, g));
    model->add(std::make_shared<nn::Activation>(nn::ActivationKind::Tanh));
  }
  return model;
}

int64_t stage0_peak(const std::string& schedule, Recompute recompute) {
  auto model = tanh_stack(16, 64);
  Pipeline pipeline(model, partition_uniform(*model, 4), {8, schedule, recompute, {}, 0, false},
                    [](const Tensor& out, const Tensor& target) { return nn::mse_loss(out, target); });
  Generator g(1);
  return pipeline.run({randn({8 * 64, 64}, g), randn({8 * 64, 64}, g), 0}, 0).peak_bytes[0];
}

TEST(Executor, StageZeroKeepsAllMicroBatchesUnderGPipeAndAtMostKUnder1F1B) {
  // Stage 0 holds 4 Linear+Tanh layers; one micro-batch is [64, 64] floats (16 KiB) and
  // keeps 4 such tensors for backward (the tanh outputs): 64 KiB. Its weight gradients take
  // 4 x (64 x 64 + 64) floats, about 65 KiB, once backward has run.
  // While one layer runs backward, up to four [64, 64] tensors and its bias gradient are in
  // flight besides those.
  const int64_t activation = 4 * 64 * 64 * 4, gradients = 4 * (64 * 64 + 64) * 4, one_tensor = 64 * 64 * 4;
  const int64_t transient = 4 * one_tensor + 64 * 4;
  const int64_t gpipe = stage0_peak("gpipe", Recompute::Never), one_f_one_b = stage0_peak("1f1b", Recompute::Never);
  const int64_t recomputed = stage0_peak("gpipe", Recompute::Always);
  EXPECT_GE(gpipe, 8 * activation);                                  // all 8 micro-batches in flight
  EXPECT_LE(gpipe, 8 * activation + gradients + transient);
  EXPECT_GE(one_f_one_b, 4 * activation);                            // K - 0 = 4 in flight
  EXPECT_LE(one_f_one_b, 4 * activation + gradients + transient);
  // Recomputation keeps only each micro-batch's stage output (its input is the data) plus
  // one micro-batch's internals while it is recomputed.
  EXPECT_LE(recomputed, 8 * one_tensor + activation + gradients + transient);
  EXPECT_LT(recomputed, gpipe - 4 * activation);  // saves at least 4 micro-batches' internals
}

// A layer that throws on demand.
struct Exploding : nn::Module {
  std::shared_ptr<bool> armed = std::make_shared<bool>(false);
  Tensor forward(const Tensor& x) override {
    if (*armed) throw std::runtime_error("this layer exploded");
    return x;
  }
  std::string type_name() const override { return "Exploding"; }
};

TEST(Executor, AFailingStageStopsEveryStageAndReportsWhere) {
  auto model = tanh_stack(4, 8);
  auto exploding = std::make_shared<Exploding>();
  auto with_bomb = std::make_shared<nn::Sequential>();
  for (size_t i = 0; i < model->size(); ++i) {
    with_bomb->add((*model)[i]);
    if (i == 4) with_bomb->add(exploding);  // layer 5: stage 2 of the balance below
  }
  Pipeline pipeline(with_bomb, partition_explicit(*with_bomb, {2, 3, 2, 2}), {4, "1f1b", Recompute::Never, {}, 0, false},
                    [](const Tensor& out, const Tensor& target) { return nn::mse_loss(out, target); });
  Generator g(2);
  const datasets::Batch batch{randn({8, 8}, g), randn({8, 8}, g), 0};
  pipeline.run(batch, 0);  // fine while unarmed
  *exploding->armed = true;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW_WITH(pipeline.run(batch, 1), "pipeline stage 2", "Forward of micro-batch 0", "this layer exploded");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  *exploding->armed = false;
  EXPECT_NO_THROW(pipeline.run(batch, 2));  // and the pipeline still works afterwards
}

// A layer that, once armed, sleeps in its first forward: a stalled stage.
struct Stalling : nn::Module {
  std::shared_ptr<double> seconds = std::make_shared<double>(0.0);
  Tensor forward(const Tensor& x) override {
    if (*seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(std::exchange(*seconds, 0.0)));
    return x;
  }
  std::string type_name() const override { return "Stalling"; }
};

TEST(Executor, AStalledPipelineReportsWhereEveryStageIsAndGoesOn) {
  auto model = tanh_stack(4, 8);
  auto stalling = std::make_shared<Stalling>();
  auto stalled = std::make_shared<nn::Sequential>();
  for (size_t i = 0; i < model->size(); ++i) {
    if (i == 2) stalled->add(stalling);  // the first layer of stage 1
    stalled->add((*model)[i]);
  }
  std::mutex mutex;
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> reports;
  PipelineOptions options{2, "1f1b", Recompute::Never, {}, 0, false};
  options.status_output = [&](const std::string& report) {
    std::lock_guard lock(mutex);
    reports.push_back({std::chrono::steady_clock::now(), report});
  };
  Pipeline pipeline(stalled, partition_explicit(*stalled, {2, 7}), options,
                    [](const Tensor& out, const Tensor& target) { return nn::mse_loss(out, target); });
  Generator g(2);
  const datasets::Batch batch{randn({8, 8}, g), randn({8, 8}, g), 0};
  const float unstalled = pipeline.run(batch, 0).loss;
  model->zero_grad();

  // SIGUSR1 while stage 1 sleeps in its first forward and stage 0 waits for its gradient.
  install_status_signal(SIGUSR1);
  *stalling->seconds = 1.5;
  std::chrono::steady_clock::time_point asked;
  std::thread asker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    asked = std::chrono::steady_clock::now();
    std::raise(SIGUSR1);
  });
  const float loss = pipeline.run(batch, 0).loss;
  asker.join();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_LT(reports[0].first - asked, std::chrono::seconds(2));
  const std::string& report = reports[0].second;
  EXPECT_NE(report.find("stage 0: instruction"), std::string::npos) << report;
  EXPECT_NE(report.find("ReceiveGradient of micro-batch 0, waiting for the gradient from stage 1"), std::string::npos) << report;
  EXPECT_NE(report.find("stage 1: instruction 2 of"), std::string::npos) << report;
  EXPECT_NE(report.find("Forward of micro-batch 0; 1 in flight"), std::string::npos) << report;
  EXPECT_EQ(loss, unstalled);  // and the run went on to the same result
  model->zero_grad();

  // A run slower than status_after_seconds reports by itself, once.
  reports.clear();
  Pipeline watched(stalled, partition_explicit(*stalled, {2, 7}),
                   [&] {
                     PipelineOptions o = options;
                     o.status_after_seconds = 0.3;
                     return o;
                   }(),
                   [](const Tensor& out, const Tensor& target) { return nn::mse_loss(out, target); });
  *stalling->seconds = 1.0;
  EXPECT_EQ(watched.run(batch, 0).loss, unstalled);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].second.find("waiting for the gradient from stage 1"), std::string::npos) << reports[0].second;
}

// A stage keeps its thread from step to step: on a GPU the thread's stream, cuBLAS handles
// and cached memory belong to it (pipeline/stage_threads.h).
TEST(Executor, EachStageRunsOnOneThreadOfItsOwnEveryStep) {
  auto model = tanh_stack(4, 8);
  Pipeline pipeline(model, partition_uniform(*model, 3), {2, "1f1b", Recompute::Never, {}, 0, false},
                    [](const Tensor& out, const Tensor& target) { return nn::mse_loss(out, target); });
  std::vector<std::set<std::thread::id>> threads(3);
  pipeline.set_optimizer_step([&](int stage, int, uint64_t) { threads[stage].insert(std::this_thread::get_id()); });
  Generator g(2);
  const datasets::Batch batch{randn({8, 8}, g), randn({8, 8}, g), 0};
  for (int step = 0; step < 4; ++step) pipeline.run(batch, step);
  std::set<std::thread::id> all{std::this_thread::get_id()};
  for (const auto& stage : threads) {
    ASSERT_EQ(stage.size(), 1u);
    all.insert(*stage.begin());
  }
  EXPECT_EQ(all.size(), 4u);  // three stage threads and the caller's
}

// Kernel threads per stage (kernels/cpu/threads.h) split the stages' GEMMs: layers of 256 x
// 256 on 256 rows are large enough. The results must not change with the thread count: not a
// bit with our AVX-512 GEMM, within rounding with Eigen's.
TEST(Executor, KernelThreadsPerStageChangeNoResult) {
  const auto run = [](int kernel_threads, std::set<int>* seen_in_stages) {
    auto model = tanh_stack(6, 256);
    Pipeline pipeline(model, partition_uniform(*model, 2), {2, "1f1b", Recompute::Never, {}, 0, false, kernel_threads},
                      [](const Tensor& out, const Tensor& target) { return nn::mse_loss(out, target); });
    nn::AdamW optimizer(model->named_parameters(), {.lr = 1e-3f});
    std::mutex mutex;
    pipeline.set_optimizer_step([&](int, int, uint64_t) {
      std::lock_guard lock(mutex);
      seen_in_stages->insert(kernels::cpu::kernel_threads());
    });
    Generator g(5);
    const datasets::Batch batch{randn({512, 256}, g), randn({512, 256}, g), 0};
    TrainingRun result;
    for (int step = 0; step < 3; ++step) {
      result.losses.push_back(pipeline.run(batch, step).loss);
      optimizer.step();
      optimizer.zero_grad();
    }
    result.losses.push_back(mean(pipeline.forward(batch.inputs)).item());
    result.weights = model->state_dict();
    return result;
  };
  std::set<int> seen_one, seen_three;
  const TrainingRun one = run(1, &seen_one), three = run(3, &seen_three);
  EXPECT_EQ(seen_one, std::set<int>{1});
  EXPECT_EQ(seen_three, std::set<int>{3});
  EXPECT_EQ(kernels::cpu::kernel_threads(), 1);  // forward() put the caller's count back
#if defined(__AVX512F__)
  expect_identical(one, three, "3 kernel threads per stage");
#else
  for (size_t i = 0; i < one.losses.size(); ++i) EXPECT_NEAR(three.losses[i], one.losses[i], 1e-5f) << i;
  for (const auto& [name, t] : one.weights) testing::expect_same_values(three.weights.at(name), t, 1e-5f, 1e-5f);
#endif
  auto model = tanh_stack(2, 8);
  EXPECT_THROW_WITH(Pipeline(model, partition_uniform(*model, 1), {1, "gpipe", Recompute::Never, {}, 0, false, 0},
                             [](const Tensor& out, const Tensor& target) { return nn::mse_loss(out, target); }),
                    "kernel_threads is 0");
}

TEST(Partition, PlansCoverEveryLayerOnceOrSayWhyNot) {
  auto model = nn::make_gpt(small_gpt());  // 6 layers: embedding, 4 blocks, head
  const StagePlan uniform = partition_uniform(*model, 4);
  EXPECT_EQ(uniform.layers_per_stage, (std::vector<int>{1, 1, 2, 2}));
  EXPECT_EQ(uniform.parameters[0] + uniform.parameters[1] + uniform.parameters[2] + uniform.parameters[3], model->parameter_count());
  EXPECT_NE(uniform.str(*model).find("stage 3: layers 4..5 (block3 .. head)"), std::string::npos) << uniform.str(*model);
  EXPECT_THROW_WITH(partition_uniform(*model, 7), "6 layers into 7 stages");
  EXPECT_THROW_WITH(partition_explicit(*model, {2, 2, 1}), "covers 5 layers", "has 6");
  EXPECT_THROW_WITH(make_partition(*model, 2, "3,2,1", Tensor()), "3 stages but 2");
  EXPECT_THROW_WITH(make_partition(*model, 2, "random", Tensor()), "'random'");
  const StagePlan by_params = partition_by_parameters(*model, 2);
  EXPECT_EQ(by_params.layers_per_stage[0] + by_params.layers_per_stage[1], 6);
  const StagePlan timed = partition_by_time(*model, 3, gpt_batch(0).inputs);
  EXPECT_EQ(timed.stages(), 3);
}

TEST(Partition, BalanceByCostIsExact) {
  // Against every possible set of cuts, on random costs.
  Generator g(4);
  for (int trial = 0; trial < 50; ++trial) {
    const std::vector<float> drawn = rand({7}, g, 0.1f, 5.0f).to_vector<float>();
    const std::vector<double> costs(drawn.begin(), drawn.end());
    for (int k = 1; k <= 4; ++k) {
      auto largest = [&](const std::vector<int>& balance) {
        double worst = 0, part = 0;
        size_t layer = 0;
        for (int count : balance) {
          part = 0;
          for (int i = 0; i < count; ++i) part += costs[layer++];
          worst = std::max(worst, part);
        }
        return worst;
      };
      double best = 1e9;
      std::function<void(std::vector<int>, int)> search = [&](std::vector<int> balance, int left) {
        if (static_cast<int>(balance.size()) == k - 1) {
          if (left >= 1) balance.push_back(left), best = std::min(best, largest(balance));
          return;
        }
        for (int c = 1; c < left; ++c) {
          balance.push_back(c);
          search(balance, left - c);
          balance.pop_back();
        }
      };
      search({}, 7);
      EXPECT_NEAR(largest(balance_by_cost(costs, k)), best, 1e-12) << "trial " << trial << " k " << k;
    }
  }
}

}  // namespace
}  // namespace minipipe::pipeline
