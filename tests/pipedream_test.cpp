// PipeDream's asynchronous pipeline (pipeline/pipedream.h): the threaded executor against an
// independent sequential replay of the same run, ordinary training as the limit case, the
// staleness that weight stashing fixes, and the versions each stage holds.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>

#include "autograd/checkpoint.h"
#include "autograd/elementwise.h"
#include "autograd/engine.h"
#include "autograd/node.h"
#include "nn/forward_context.h"
#include "nn/losses.h"
#include "nn/optim/optimizer.h"
#include "nn/transformer.h"
#include "pipeline/executor.h"
#include "pipeline/pipedream.h"
#include "pipeline/validator.h"
#include "tensor/factories.h"
#include "pipeline_test_support.h"
#include "test_helpers.h"

namespace minipipe::pipeline {
namespace {

constexpr uint64_t kSeed = 7;
constexpr int kMiniBatchesPerRun = 4, kRuns = 2;

using testing::expect_identical;
using testing::gpt_batch;
using testing::small_gpt;

Tensor loss_function(const Tensor& logits, const Tensor& targets) { return nn::cross_entropy_loss(logits, targets); }

std::vector<std::unique_ptr<nn::Optimizer>> stage_optimizers(const nn::Sequential& model, const StagePlan& plan) {
  std::vector<std::unique_ptr<nn::Optimizer>> optimizers;
  for (int s = 0; s < plan.stages(); ++s)
    optimizers.push_back(std::make_unique<nn::AdamW>(stage_module(model, plan, s)->named_parameters(), nn::AdamWOptions{.lr = 1e-2f}));
  return optimizers;
}

// A learning rate that changes every step, so that an update taken at the wrong step shows.
float learning_rate(uint64_t step) { return 1e-2f / static_cast<float>(1 + step % 3); }

struct AsyncRun : testing::TrainingRun {
  std::vector<WeightVersionRecord> versions;
  std::vector<int> peak_weight_versions;
  std::vector<int64_t> peak_stash_bytes;
  std::vector<std::map<std::string, Tensor>> replica_weights;  // every further replica's, stage by stage
};

struct AsyncSetup {
  int stages;
  WeightPolicy weights;
  Recompute recompute;
  int micro_batches_per_update;
  std::vector<int> replicas = {};  // per stage; empty: one each
  bool constant_learning_rate = false;  // 1e-2, as testing::train's ordinary training has
  float rate(uint64_t step) const { return constant_learning_rate ? 1e-2f : learning_rate(step); }
  int replicas_of(int s) const { return replicas.empty() ? 1 : replicas[s]; }
  std::string str() const {
    return "K=" + std::to_string(stages) + " " + weight_policy_name(weights) + " recompute " + recompute_name(recompute) +
           " m=" + std::to_string(micro_batches_per_update) + (replicas.empty() ? "" : " replicas " + format_replicas(replicas));
  }
};

// kRuns calls of run_async, each streaming kMiniBatchesPerRun mini-batches.
AsyncRun run_pipeline(const AsyncSetup& setup, int mini_batches_per_run = kMiniBatchesPerRun, int runs = kRuns) {
  auto model = nn::make_gpt(small_gpt());
  const StagePlan plan = partition_uniform(*model, setup.stages);
  PipelineOptions options{setup.micro_batches_per_update, "pipedream", setup.recompute, {}, kSeed, false, 1, setup.weights};
  options.replicas = setup.replicas;
  options.model_factory = [] { return nn::make_gpt(small_gpt()); };
  Pipeline pipeline(model, plan, options, loss_function);
  std::vector<std::vector<std::unique_ptr<nn::Optimizer>>> optimizers(setup.stages);  // [stage][replica]
  for (int s = 0; s < setup.stages; ++s)
    for (int r = 0; r < setup.replicas_of(s); ++r)
      optimizers[s].push_back(std::make_unique<nn::AdamW>(pipeline.replica(s, r)->named_parameters(), nn::AdamWOptions{.lr = 1e-2f}));
  pipeline.set_optimizer_step([&](int s, int r, uint64_t step) {
    optimizers[s][r]->set_learning_rate(setup.rate(step));
    optimizers[s][r]->step();
    optimizers[s][r]->zero_grad();
  });
  AsyncRun run;
  for (int r = 0; r < runs; ++r) {
    std::vector<datasets::Batch> batches;
    for (int i = 0; i < mini_batches_per_run; ++i) batches.push_back(gpt_batch(r * mini_batches_per_run + i));
    StepResult result = pipeline.run_async(batches, static_cast<uint64_t>(r * mini_batches_per_run));
    run.losses.insert(run.losses.end(), result.losses.begin(), result.losses.end());
    run.versions.insert(run.versions.end(), result.weight_versions.begin(), result.weight_versions.end());
    run.peak_weight_versions = result.peak_weight_versions;
    run.peak_stash_bytes = result.peak_stash_bytes;
  }
  run.weights = model->state_dict();
  for (int s = 0; s < setup.stages; ++s)
    for (int r = 1; r < setup.replicas_of(s); ++r) run.replica_weights.push_back(pipeline.replica(s, r)->state_dict());
  return run;
}

// The asynchronous semantics written out directly, on one thread, without schedules,
// channels or the version pass: every stage keeps every version it has made, and micro-batch
// u of a run goes forward through the stages, then backward, each stage loading the version
// that PipeDream's rules name for it. Update group g = u / m of a stage with r replicas goes
// to replica g mod r, where it is local micro-batch `local` below; each replica runs 1F1B over
// its own micro-batches with `in_flight` = ceil(W_s / r) of them in flight (W_s: the workers
// of stages s..K-1; K - s without replicas), so before its forward of local micro-batch i it
// has run the backwards of 0 .. i - in_flight, and before its backward of i those of
// 0 .. i - 1. A version is one round: the r replicas' groups g = k r .. k r + r - 1, their
// gradients averaged.
struct ReplayStage {
  int replicas, in_flight;
  int local(int u, int m) const { return (u / m / replicas) * m + u % m; }
  int updates_before_forward(int u, int m) const { return std::max(0, local(u, m) - in_flight + 1) / m; }
  int updates_before_backward(int u, int m) const { return local(u, m) / m; }
};

AsyncRun replay(const AsyncSetup& setup, int mini_batches_per_run = kMiniBatchesPerRun, int runs = kRuns) {
  const int K = setup.stages, m = setup.micro_batches_per_update;
  auto model = nn::make_gpt(small_gpt());
  const StagePlan plan = partition_uniform(*model, K);
  auto optimizers = stage_optimizers(*model, plan);  // the replicas of a stage take the same steps
  std::vector<ReplayStage> replay_stages;
  int workers_downstream = 0;
  for (int s = 0; s < K; ++s) workers_downstream += setup.replicas_of(s);
  for (int s = 0; s < K; ++s) {
    const int r = setup.replicas_of(s);
    replay_stages.push_back({r, (workers_downstream + r - 1) / r});
    workers_downstream -= r;
  }
  std::vector<std::vector<std::vector<Tensor>>> replica_gradients(K);  // [stage][replica] of the round under way
  std::vector<std::shared_ptr<nn::Sequential>> stages;
  std::vector<std::vector<std::vector<Tensor>>> history(K);  // [stage][version] -> parameter values
  auto keep_version = [&](int s) {
    std::vector<Tensor> values;
    for (const Tensor& p : stages[s]->parameters()) values.push_back(p.detach().clone());
    history[s].push_back(values);
  };
  auto load = [&](int s, size_t version) {
    NoGradGuard no_grad;
    const std::vector<Tensor> params = stages[s]->parameters();
    for (size_t i = 0; i < params.size(); ++i) copy_(params[i], history[s].at(version)[i]);
  };
  for (int s = 0; s < K; ++s) {
    stages.push_back(stage_module(*model, plan, s));
    keep_version(s);
  }
  AsyncRun run;
  for (int r = 0; r < runs; ++r) {
    std::vector<int> base;  // the versions each stage made in earlier runs: one per round
    for (int s = 0; s < K; ++s) base.push_back(static_cast<int>(history[s].size()) - 1);
    for (int u = 0; u < mini_batches_per_run * m; ++u) {
      const int64_t step = r * mini_batches_per_run + u / m;
      const datasets::Batch whole = gpt_batch(step);
      const datasets::Batch micro = datasets::split_into_micro_batches(whole, m)[u % m];
      const float weight = static_cast<float>(micro.inputs.shape()[0]) / static_cast<float>(whole.inputs.shape()[0]);
      if (u % m == 0) run.losses.push_back(0.0f);
      std::vector<int> forward_version(K), backward_version(K);
      for (int s = 0; s < K; ++s) {
        const int own = replay_stages[s].updates_before_forward(u, m), input_stage = replay_stages[0].updates_before_forward(u, m);
        forward_version[s] = base[s] + (setup.weights == WeightPolicy::VerticalSync ? input_stage : own);
        backward_version[s] =
            setup.weights == WeightPolicy::None ? base[s] + replay_stages[s].updates_before_backward(u, m) : forward_version[s];
      }
      std::vector<Tensor> inputs(K), outputs(K);
      const nn::ForwardContext context{kSeed, static_cast<uint64_t>(step), micro.sample_offset, false};
      for (int s = 0; s < K; ++s) {
        load(s, forward_version[s]);
        inputs[s] = s == 0 ? micro.inputs : outputs[s - 1].detach().set_requires_grad(true);
        const bool recompute = setup.recompute == Recompute::Always || (setup.recompute == Recompute::ExceptLast && s + 1 < K);
        nn::ForwardContextGuard guard(context);
        nn::Sequential& module = *stages[s];
        outputs[s] = recompute ? checkpoint([&module](const std::vector<Tensor>& in) { return module.forward(in[0]); }, {inputs[s]})
                               : module.forward(inputs[s]);
      }
      outputs[K - 1] = loss_function(outputs[K - 1], micro.targets) * weight;
      run.losses.back() += outputs[K - 1].item();
      nn::ForwardContext recomputing = context;
      recomputing.recomputing = true;
      for (int s = K - 1; s >= 0; --s) {
        load(s, backward_version[s]);
        nn::ForwardContextGuard guard(recomputing);
        backward({outputs[s]}, {s + 1 == K ? Tensor() : inputs[s + 1].grad()});
      }
      if ((u + 1) % m != 0) continue;
      for (int s = 0; s < K; ++s) {  // the group is complete: its replica's gradients are ready
        const int replicas = replay_stages[s].replicas, group = u / m;
        if (replicas > 1) {
          std::vector<Tensor> gradients;
          for (const Tensor& p : stages[s]->parameters()) gradients.push_back(p.grad());
          replica_gradients[s].push_back(gradients);
          stages[s]->zero_grad();
          if ((group + 1) % replicas != 0) continue;  // the round waits for its other replicas
          NoGradGuard no_grad;
          const std::vector<Tensor> params = stages[s]->parameters();
          for (size_t i = 0; i < params.size(); ++i) {  // the mean, added up in replica order
            Tensor sum = replica_gradients[s][0][i];
            for (int k = 1; k < replicas; ++k) sum = sum + replica_gradients[s][k][i];
            params[i].set_grad(sum * (1.0f / static_cast<float>(replicas)));
          }
          replica_gradients[s].clear();
        }
        load(s, history[s].size() - 1);  // an update starts from the latest weights
        optimizers[s]->set_learning_rate(setup.rate(step));  // the step of the round's last mini-batch
        optimizers[s]->step();
        optimizers[s]->zero_grad();
        keep_version(s);
      }
    }
  }
  run.weights = model->state_dict();
  return run;
}

TEST(PipeDream, MatchesAnIndependentSequentialReplayBitForBit) {
  const std::map<std::string, Tensor> untrained = nn::make_gpt(small_gpt())->state_dict();
  for (int stages : {1, 2, 3, 4})
    for (WeightPolicy weights : {WeightPolicy::Stash, WeightPolicy::VerticalSync, WeightPolicy::None, WeightPolicy::TwoBuffered})
      for (Recompute recompute : {Recompute::Never, Recompute::Always}) {
        const AsyncSetup setup{stages, weights, recompute, weights == WeightPolicy::TwoBuffered ? stages : 1};
        const AsyncRun pipelined = run_pipeline(setup);
        int trained = 0;
        for (const auto& [name, t] : untrained) trained += t.to_vector<float>() != pipelined.weights.at(name).to_vector<float>();
        EXPECT_EQ(trained, static_cast<int>(untrained.size())) << setup.str();
        expect_identical(pipelined, replay(setup), setup.str());
      }
}

TEST(PipeDream, AccumulatingSeveralMicroBatchesPerUpdateMatchesTheReplay) {
  for (WeightPolicy weights : {WeightPolicy::Stash, WeightPolicy::VerticalSync}) {
    const AsyncSetup setup{3, weights, Recompute::ExceptLast, 2};
    expect_identical(run_pipeline(setup), replay(setup), setup.str());
  }
}

// PipeDream section 3.1: a replicated stage's replicas take the mini-batches round-robin and
// average their gradients before each update; the replay does the same bookkeeping by formula.
TEST(PipeDream, ReplicatedStagesMatchTheReplayBitForBitAndKeepTheirReplicasEqual) {
  const std::vector<AsyncSetup> setups = {
      {2, WeightPolicy::Stash, Recompute::Never, 1, {2, 1}},       {2, WeightPolicy::Stash, Recompute::Always, 1, {1, 2}},
      {2, WeightPolicy::None, Recompute::Never, 1, {2, 1}},        {2, WeightPolicy::VerticalSync, Recompute::Never, 1, {2, 2}},
      {3, WeightPolicy::Stash, Recompute::ExceptLast, 1, {1, 2, 1}}, {2, WeightPolicy::Stash, Recompute::Never, 2, {2, 1}},
      {1, WeightPolicy::Stash, Recompute::Never, 1, {2}},          {2, WeightPolicy::Stash, Recompute::Never, 1, {3, 1}},
  };
  for (const AsyncSetup& setup : setups) {
    const int mini_batches = setup.replicas_of(0) == 3 ? 12 : 8;  // several rounds per replica: the steady state
    const AsyncRun pipelined = run_pipeline(setup, mini_batches);
    expect_identical(pipelined, replay(setup, mini_batches), setup.str());
    ASSERT_FALSE(pipelined.replica_weights.empty());
    for (const std::map<std::string, Tensor>& replica : pipelined.replica_weights)
      for (const auto& [name, t] : replica)  // a replica holds one stage: its names are the model's
        ASSERT_EQ(t.to_vector<float>(), pipelined.weights.at(name).to_vector<float>()) << setup.str() << ": " << name;
  }
}

TEST(PipeDream, ReplicatedStagesDifferFromUnreplicatedOnesAndExplainTheirLimits) {
  // Averaging two mini-batches' gradients per update is not one update per mini-batch.
  const AsyncRun replicated = run_pipeline({2, WeightPolicy::Stash, Recompute::Never, 1, {2, 1}});
  const AsyncRun plain = run_pipeline({2, WeightPolicy::Stash, Recompute::Never, 1});
  EXPECT_EQ(replicated.losses.front(), plain.losses.front());
  EXPECT_NE(replicated.losses, plain.losses);

  auto model = nn::make_gpt(small_gpt());
  const StagePlan plan = partition_uniform(*model, 2);
  PipelineOptions options{1, "pipedream", Recompute::Never, {}, kSeed, false};
  options.replicas = {2, 1};
  EXPECT_THROW_WITH(Pipeline(model, plan, options, loss_function), "model_factory");
  options.model_factory = [] { return nn::make_gpt({.vocabulary = 31, .context = 8, .dim = 8, .layers = 4, .heads = 2}); };
  EXPECT_THROW_WITH(Pipeline(model, plan, options, loss_function), "model_factory must build the pipeline's model again");
  options.model_factory = [] { return nn::make_gpt(small_gpt()); };
  Pipeline pipeline(model, plan, options, loss_function);
  pipeline.set_optimizer_step([](int, int, uint64_t) {});
  EXPECT_THROW_WITH(pipeline.run_async({gpt_batch(0), gpt_batch(1), gpt_batch(2)}, 0), "round-robin", "multiple of 2");
  options.weights = WeightPolicy::TwoBuffered;
  options.micro_batches = 2;
  EXPECT_THROW_WITH(Pipeline(model, plan, options, loss_function), "2bw", "replicated");
  options.weights = WeightPolicy::VerticalSync;
  EXPECT_THROW_WITH(Pipeline(model, plan, options, loss_function), "vertical sync", "same number of replicas");
  options.schedule = "1f1b";
  EXPECT_THROW_WITH(Pipeline(model, plan, options, loss_function), "pipedream");
}

TEST(PipeDream, WithOneStageOrOneMiniBatchInFlightEveryPolicyIsOrdinaryTraining) {
  // Ordinary training: one stage, one micro-batch, an optimizer step after each mini-batch.
  const testing::TrainingRun ordinary = testing::train(1, 1, "gpipe", Recompute::Never, kMiniBatchesPerRun * kRuns);
  for (WeightPolicy weights : {WeightPolicy::Stash, WeightPolicy::VerticalSync, WeightPolicy::None, WeightPolicy::TwoBuffered}) {
    const AsyncSetup one_stage{1, weights, Recompute::Never, 1, {}, true};
    expect_identical(ordinary, run_pipeline(one_stage), "one stage: " + one_stage.str());
    if (weights == WeightPolicy::TwoBuffered) continue;  // 2bw needs m >= K micro-batches per update
    // One mini-batch per run_async: it drains before the next enters, nothing is stale.
    const AsyncSetup three_stages{3, weights, Recompute::Always, 1, {}, true};
    expect_identical(ordinary, run_pipeline(three_stages, 1, kMiniBatchesPerRun * kRuns),
                     "one mini-batch in flight: " + three_stages.str());
  }
}

TEST(PipeDream, WithoutStashingBackwardsUseNewerWeightsAndTheGradientsDiffer) {
  const AsyncRun stash = run_pipeline({3, WeightPolicy::Stash, Recompute::Never, 1});
  const AsyncRun none = run_pipeline({3, WeightPolicy::None, Recompute::Never, 1});
  int stale = 0;
  for (const WeightVersionRecord& r : stash.versions) EXPECT_EQ(r.backward_version, r.forward_version);
  for (const WeightVersionRecord& r : none.versions) stale += r.backward_version != r.forward_version;
  EXPECT_GT(stale, 0);
  // The same first mini-batch (nothing is stale yet), then different training.
  EXPECT_EQ(stash.losses.front(), none.losses.front());
  EXPECT_NE(stash.losses, none.losses);
  int differing = 0;
  for (const auto& [name, t] : stash.weights) differing += t.to_vector<float>() != none.weights.at(name).to_vector<float>();
  EXPECT_GT(differing, 0);
}

TEST(PipeDream, VerticalSyncRunsEveryStageWithTheInputStagesVersion) {
  const AsyncRun run = run_pipeline({4, WeightPolicy::VerticalSync, Recompute::Never, 1});
  ASSERT_FALSE(run.versions.empty());
  bool older_than_own = false;
  for (const WeightVersionRecord& r : run.versions) {
    EXPECT_EQ(r.forward_version, r.input_stage_version);
    EXPECT_EQ(r.backward_version, r.forward_version);
  }
  const AsyncRun stash = run_pipeline({4, WeightPolicy::Stash, Recompute::Never, 1});
  for (size_t i = 0; i < run.versions.size(); ++i) older_than_own |= run.versions[i].forward_version < stash.versions[i].forward_version;
  EXPECT_TRUE(older_than_own);  // later stages go back to the input stage's older versions
}

TEST(PipeDream, StageSHoldsAtMostKMinusSVersionsUnderStashAndTwoUnder2bw) {
  for (int stages : {2, 3, 4}) {
    const AsyncRun stash = run_pipeline({stages, WeightPolicy::Stash, Recompute::Never, 1}, 8, 1);
    const AsyncRun two_buffered = run_pipeline({stages, WeightPolicy::TwoBuffered, Recompute::Never, stages}, 3, 1);
    auto model = nn::make_gpt(small_gpt());
    const StagePlan plan = partition_uniform(*model, stages);
    for (int s = 0; s < stages; ++s) {
      int64_t parameter_bytes = 0;
      for (const Tensor& p : stage_module(*model, plan, s)->parameters()) parameter_bytes += p.nbytes();
      // With 8 mini-batches the steady state is reached: exactly K - s versions.
      EXPECT_EQ(stash.peak_weight_versions[s], stages - s) << "stash, K=" << stages << " stage " << s;
      EXPECT_LE(stash.peak_stash_bytes[s], (stages - s) * parameter_bytes);
      EXPECT_EQ(stash.peak_stash_bytes[s] > 0, stages - s > 1);
      EXPECT_LE(two_buffered.peak_weight_versions[s], 2) << "2bw, K=" << stages << " stage " << s;
    }
  }
}

// An identity layer whose backward throws on its n-th call once armed.
struct FailingBackward : nn::Module {
  std::shared_ptr<bool> armed = std::make_shared<bool>(false);
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  int fail_on_call = 3;
  Tensor forward(const Tensor& x) override {
    Tensor y;
    {
      NoGradGuard no_grad;
      y = x.clone();
    }
    return record("failing_backward", y, {x}, [armed = armed, calls = calls, n = fail_on_call](const Tensor& g) {
      if (*armed && ++*calls == n) throw std::runtime_error("the backward exploded");
      return std::vector<Tensor>{g};
    });
  }
  std::string type_name() const override { return "FailingBackward"; }
};

TEST(PipeDream, AFailingStageStopsTheStreamAndLeavesEachStageItsNewestWeights) {
  // Stage 0 fails in the backward of micro-batch 2, which (K = 3, stash) runs with weight
  // version 0 exchanged into the parameters while the stage's newest is version 2.
  auto gpt = nn::make_gpt(small_gpt());
  auto failing = std::make_shared<FailingBackward>();
  auto model = std::make_shared<nn::Sequential>();
  for (size_t i = 0; i < gpt->size(); ++i) {
    model->add((*gpt)[i], gpt->name_of(i));
    if (i == 0) model->add(failing, "failing");
  }
  const StagePlan plan = partition_explicit(*model, {3, 2, 2});
  Pipeline pipeline(model, plan, {1, "pipedream", Recompute::Never, {}, kSeed, false}, loss_function);
  auto optimizers = stage_optimizers(*model, plan);
  std::vector<std::vector<std::vector<float>>> newest(3);  // per stage: its parameters after its last update
  auto remember = [&](int s) {
    newest[s].clear();
    for (const Tensor& p : pipeline.stage(s)->parameters()) newest[s].push_back(p.to_vector<float>());
  };
  for (int s = 0; s < 3; ++s) remember(s);
  pipeline.set_optimizer_step([&](int s, int, uint64_t) {
    optimizers[s]->step();
    optimizers[s]->zero_grad();
    remember(s);
  });
  std::vector<datasets::Batch> batches;
  for (int i = 0; i < 8; ++i) batches.push_back(gpt_batch(i));
  *failing->armed = true;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW_WITH(pipeline.run_async(batches, 0), "pipeline stage 0", "Backward of micro-batch 2", "the backward exploded");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  for (int s = 0; s < 3; ++s) {
    std::vector<std::vector<float>> now;
    for (const Tensor& p : pipeline.stage(s)->parameters()) now.push_back(p.to_vector<float>());
    EXPECT_EQ(now, newest[s]) << "stage " << s << " was left with an older weight version";
  }
  *failing->armed = false;
  EXPECT_NO_THROW(pipeline.run_async(batches, 8));  // and the pipeline still runs afterwards
}

TEST(PipeDream, AFailingReplicaStopsEveryWorker) {
  auto gpt = nn::make_gpt(small_gpt());
  auto failing = std::make_shared<FailingBackward>();
  auto build = [](const std::shared_ptr<nn::Sequential>& from, const std::shared_ptr<nn::Module>& extra) {
    auto model = std::make_shared<nn::Sequential>();
    for (size_t i = 0; i < from->size(); ++i) {
      model->add((*from)[i], from->name_of(i));
      if (i == 0) model->add(extra, "failing");
    }
    return model;
  };
  auto model = build(gpt, failing);
  const StagePlan plan = partition_explicit(*model, {3, 4});
  PipelineOptions options{1, "pipedream", Recompute::Never, {}, kSeed, false};
  options.replicas = {2, 1};
  options.model_factory = [&] { return build(nn::make_gpt(small_gpt()), std::make_shared<FailingBackward>()); };
  Pipeline pipeline(model, plan, options, loss_function);
  pipeline.set_optimizer_step([](int, int, uint64_t) {});
  std::vector<datasets::Batch> batches;
  for (int i = 0; i < 8; ++i) batches.push_back(gpt_batch(i));
  *failing->armed = true;  // replica 0 of stage 0 fails; replica 1 waits in an AllReduce for it
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW_WITH(pipeline.run_async(batches, 0), "pipeline stage 0 replica 0", "the backward exploded");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(PipeDream, RunAsyncExplainsWhatItNeeds) {
  auto model = nn::make_gpt(small_gpt());
  Pipeline pipeline(model, partition_uniform(*model, 2), {1, "pipedream", Recompute::Never, {}, kSeed, false}, loss_function);
  EXPECT_THROW_WITH(pipeline.run_async({gpt_batch(0)}, 0), "set_optimizer_step");
  EXPECT_THROW_WITH(pipeline.run(gpt_batch(0), 0), "run_async");
  EXPECT_THROW_WITH(Pipeline(model, partition_uniform(*model, 4), {2, "pipedream", Recompute::Never, {}, 0, false, 1,
                                                                   WeightPolicy::TwoBuffered},
                             loss_function),
                    "2bw", "at least 4");
}

}  // namespace
}  // namespace minipipe::pipeline
