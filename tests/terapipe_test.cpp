// TeraPipe's token slices (Li et al. 2021): sliced training against the unsliced model (the
// same loss and gradients up to rounding), the threaded pipeline against an independent
// sequential replay of sliced training on one device (bit for bit), the schedules over
// (micro-batch, slice) units, and the memory recomputation leaves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <tuple>
#include <random>

#include "autograd/elementwise.h"
#include "autograd/engine.h"
#include "autograd/node.h"
#include "autograd/shape_ops.h"
#include "nn/forward_context.h"
#include "nn/key_value_cache.h"
#include "nn/losses.h"
#include "nn/optim/optimizer.h"
#include "nn/transformer.h"
#include "pipeline/executor.h"
#include "pipeline/simulator.h"
#include "pipeline/slice_planner.h"
#include "pipeline/token_slices.h"
#include "pipeline/validator.h"
#include "tensor/allocator.h"
#include "tensor/factories.h"
#include "pipeline_test_support.h"
#include "test_helpers.h"

namespace minipipe::pipeline {
namespace {

constexpr uint64_t kSeed = 7;
constexpr int64_t kTokens = 12;

nn::GPTConfig sliced_gpt() {
  return {.vocabulary = 31, .context = 16, .dim = 16, .layers = 4, .heads = 2, .dropout = 0.1f, .seed = 3};
}

// 4 sequences of 12 tokens, a pure function of the step.
datasets::Batch batch_of(int64_t step) {
  Generator g(200 + step);
  return {randint(0, 31, {4, kTokens}, g), randint(0, 31, {4, kTokens}, g), 0};
}

Tensor loss_function(const Tensor& logits, const Tensor& targets) { return nn::cross_entropy_loss(logits, targets); }

// Largest |a - b| over largest |b|: gradients summed in another order differ by rounding.
double relative_difference(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  double difference = 0, scale = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    difference = std::max(difference, static_cast<double>(std::fabs(x[i] - y[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(y[i])));
  }
  return scale > 0 ? difference / scale : difference;
}

struct Gradients {
  float loss;
  std::map<std::string, Tensor> grads;
};

Gradients gradients_of(const nn::Sequential& model, float loss) {
  Gradients out{loss, {}};
  for (const auto& [name, p] : model.named_parameters()) out.grads[name] = p.grad().clone();
  return out;
}

// The oracle: the whole batch through the unsliced model, one forward and one backward.
Gradients unsliced_gradients(const datasets::Batch& batch) {
  auto model = nn::make_gpt(sliced_gpt());
  nn::ForwardContextGuard context({.seed = kSeed, .step = 0});
  const Tensor loss = loss_function((*model)(batch.inputs), batch.targets);
  loss.backward();
  return gradients_of(*model, loss.item());
}

Gradients pipeline_gradients(const datasets::Batch& batch, std::vector<int64_t> slices, int stages, const std::string& schedule,
                             int micro_batches, Recompute recompute) {
  auto model = nn::make_gpt(sliced_gpt());
  PipelineOptions options{micro_batches, schedule, recompute, {}, kSeed};
  options.token_slices = std::move(slices);
  Pipeline pipeline(model, partition_uniform(*model, stages), options, loss_function);
  const float loss = pipeline.run(batch, 0).loss;
  return gradients_of(*model, loss);
}

std::vector<int64_t> random_slicing(std::mt19937& rng, int64_t tokens) {
  std::vector<int64_t> lengths;
  for (int64_t left = tokens; left > 0;) {
    const int64_t length = std::uniform_int_distribution<int64_t>(1, left)(rng);
    lengths.push_back(length);
    left -= length;
  }
  return lengths;
}

TEST(TokenSlices, AnySlicingGivesTheUnslicedLossAndGradients) {
  const datasets::Batch batch = batch_of(0);
  const Gradients expected = unsliced_gradients(batch);
  std::mt19937 rng(11);
  std::vector<std::vector<int64_t>> slicings{{kTokens},                         // one slice
                                             uniform_token_slices(kTokens, 4),  // uniform
                                             {7, 1, 4},                         // uneven
                                             std::vector<int64_t>(kTokens, 1)};  // a token per slice
  for (int i = 0; i < 4; ++i) slicings.push_back(random_slicing(rng, kTokens));
  for (const auto& slices : slicings) {
    for (int stages : {1, 3}) {
      const Gradients sliced = pipeline_gradients(batch, slices, stages, "gpipe", 2, Recompute::Never);
      const std::string what = format_token_slices(slices) + " on " + std::to_string(stages) + " stages";
      EXPECT_NEAR(sliced.loss, expected.loss, 1e-5 * std::fabs(expected.loss)) << what;
      for (const auto& [name, g] : expected.grads) EXPECT_LE(relative_difference(sliced.grads.at(name), g), 1e-5) << what << ": " << name;
    }
  }
}

TEST(TokenSlices, SlicingWithoutTheKeysAndValuesOfEarlierSlicesIsWrong) {
  // The test above can fail: a slice that sees only its own tokens gives other gradients.
  const datasets::Batch batch = batch_of(0);
  const Gradients expected = unsliced_gradients(batch);
  auto model = nn::make_gpt(sliced_gpt());
  nn::ForwardContextGuard context({.seed = kSeed, .step = 0});
  Tensor total = zeros({});
  for (int64_t first = 0; first < kTokens; first += 4) {
    nn::ForwardContextGuard slice({.seed = kSeed, .step = 0, .token_offset = first, .sequence_tokens = kTokens});
    const Tensor logits = (*model)(batch.inputs.narrow(1, first, 4).contiguous());
    total = add(total, loss_function(logits, batch.targets.narrow(1, first, 4).contiguous()) * (4.0f / kTokens));
  }
  total.backward();
  EXPECT_GT(relative_difference(gradients_of(*model, 0).grads.at("block0.attention.qkv.weight"),
                                expected.grads.at("block0.attention.qkv.weight")),
            1e-3);
}

// One device, no threads, no schedule: each micro-batch's slices forward in order through
// the whole model, then backward in reverse with the keys and values as extra roots; the
// unit losses weighted by their share of the batch's tokens; AdamW after each mini-batch.
testing::TrainingRun sequential_sliced_training(const std::vector<int64_t>& slices, int micro_batches, int steps) {
  auto model = nn::make_gpt(sliced_gpt());
  nn::AdamW optimizer(model->named_parameters(), {.lr = 1e-2f});
  testing::TrainingRun run;
  const std::vector<int64_t> offsets = token_slice_offsets(slices);
  for (int step = 0; step < steps; ++step) {
    const datasets::Batch batch = batch_of(step);
    float loss_sum = 0;  // as the pipeline reports it: per micro-batch in double, then their float sum
    for (const datasets::Batch& micro : datasets::split_into_micro_batches(batch, micro_batches)) {
      const float share = static_cast<float>(micro.inputs.shape()[0]) / static_cast<float>(batch.inputs.shape()[0]);
      nn::KeyValueCache cache;
      std::vector<Tensor> losses;
      auto forward = [&](size_t i) {
        nn::ForwardContextGuard context({.seed = kSeed, .step = static_cast<uint64_t>(step), .sample_offset = micro.sample_offset,
                                         .token_offset = offsets[i], .sequence_tokens = kTokens});
        nn::KeyValueCache::Scope scope(cache, static_cast<int>(i));
        const Tensor logits = (*model)(micro.inputs.narrow(1, offsets[i], slices[i]).contiguous());
        return loss_function(logits, micro.targets.narrow(1, offsets[i], slices[i]).contiguous()) *
               (share * (static_cast<float>(slices[i]) / kTokens));
      };
      for (size_t i = 0; i < slices.size(); ++i) losses.push_back(forward(i));
      for (size_t i = slices.size(); i-- > 0;) {
        std::vector<Tensor> roots{losses[i]}, gradients{Tensor()};
        cache.add_backward_roots(static_cast<int>(i), roots, gradients);
        backward(roots, gradients);
        cache.release(static_cast<int>(i));
      }
      double micro_loss = 0;
      for (const Tensor& l : losses) micro_loss += l.item();
      loss_sum += static_cast<float>(micro_loss);
    }
    run.losses.push_back(loss_sum);
    optimizer.step();
    optimizer.zero_grad();
  }
  run.weights = model->state_dict();
  return run;
}

testing::TrainingRun pipelined_sliced_training(const std::vector<int64_t>& slices, int stages, const std::string& schedule,
                                               int micro_batches, Recompute recompute, int steps) {
  PipelineOptions options{micro_batches, schedule, recompute, {}, kSeed};
  options.token_slices = slices;
  return testing::train(sliced_gpt(), stages, options, batch_of, steps);
}

TEST(TokenSlices, PipelinedSlicedTrainingEqualsOneDeviceSlicedTrainingBitForBit) {
  const std::vector<int64_t> slices{5, 4, 2, 1};
  const testing::TrainingRun expected = sequential_sliced_training(slices, 2, 4);
  for (int stages : {1, 2, 3, 6})
    for (const std::string schedule : {"gpipe", "1f1b"})
      for (Recompute recompute : {Recompute::Never, Recompute::Always}) {
        const std::string what = std::to_string(stages) + " stages, " + schedule + ", recompute " + recompute_name(recompute);
        testing::expect_identical(pipelined_sliced_training(slices, stages, schedule, 2, recompute, 4), expected, what);
      }
}

TEST(TokenSlices, RecomputationKeepsSliceInputsPlusOneSlicesInternals) {
  // One stage, one micro-batch of 4 sequences of 64 tokens in 4 slices, TeraPipe's order
  // (every slice forward, then backward in reverse).
  nn::GPTConfig config = sliced_gpt();
  config.context = 64;
  Generator g(5);
  const datasets::Batch batch{randint(0, 31, {4, 64}, g), randint(0, 31, {4, 64}, g), 0};
  const std::vector<int64_t> slices = uniform_token_slices(64, 4), offsets = token_slice_offsets(slices);
  auto peak = [&](Recompute recompute) {
    auto model = nn::make_gpt(config);
    PipelineOptions options{1, "gpipe", recompute, {}, kSeed};
    options.token_slices = slices;
    Pipeline pipeline(model, partition_uniform(*model, 1), options, loss_function);
    return pipeline.run(batch, 0).peak_bytes[0];
  };
  // The state the pipeline is in before its first backward, rebuilt by hand: every slice's
  // keys and values in the cache, no graph. Then what the last slice, the one with the most
  // context, holds at most while its forward is recomputed and backwarded (its internals,
  // and the parameters' and earlier keys' and values' gradients it creates).
  auto model = nn::make_gpt(config);
  auto tracker = std::make_shared<MemoryTracker>();
  MemoryTrackerScope scope(tracker);
  nn::KeyValueCache cache;
  nn::ForwardContext context{.seed = kSeed, .step = 0, .sequence_tokens = 64};
  auto forward = [&](int i) {
    context.token_offset = offsets[i];
    nn::ForwardContextGuard guard(context);
    nn::KeyValueCache::Scope slice(cache, i);
    return loss_function((*model)(batch.inputs.narrow(1, offsets[i], slices[i]).contiguous()),
                         batch.targets.narrow(1, offsets[i], slices[i]).contiguous());
  };
  {
    NoGradGuard no_graph;
    for (int i = 0; i < 4; ++i) forward(i);
  }
  const int64_t cache_bytes = cache.bytes();
  EXPECT_EQ(cache_bytes, 4 * 2 * 4 * 64 * 16 * 4);  // layers x (keys, values) x [4, 64, 16] floats
  tracker->reset_peak();
  const int64_t before = tracker->current_bytes.load();
  {
    std::vector<Tensor> roots{forward(3)}, gradients{Tensor()};
    cache.add_backward_roots(3, roots, gradients);
    backward(roots, gradients);
  }
  const int64_t one_slice = tracker->peak_bytes.load() - before;
  const int64_t inputs = 2 * batch.inputs.nbytes();  // the token ids and targets, sliced
  // Not activations: once the parameters' gradients exist, a later slice's backward adds to
  // them through a fresh sum, which holds one more copy for a moment.
  int64_t gradient_bytes = 0;
  for (const Tensor& p : model->parameters()) gradient_bytes += p.nbytes();
  const int64_t bound = inputs + cache_bytes + one_slice + gradient_bytes;
  const int64_t with_recompute = peak(Recompute::Always), without = peak(Recompute::Never);
  std::printf("stage peak: recompute %lld bytes, bound (inputs %lld + keys/values %lld + one slice %lld + gradients %lld) "
              "%lld, no recompute %lld\n",
              static_cast<long long>(with_recompute), static_cast<long long>(inputs), static_cast<long long>(cache_bytes),
              static_cast<long long>(one_slice), static_cast<long long>(gradient_bytes), static_cast<long long>(bound),
              static_cast<long long>(without));
  EXPECT_LE(with_recompute, bound * 21 / 20);
  EXPECT_GT(without, bound * 3 / 2);  // without recomputation every slice's internals stay
}

TEST(TokenSlices, BadSlicingsAreClearErrors) {
  auto model = nn::make_gpt(sliced_gpt());
  PipelineOptions options{1, "gpipe", Recompute::Never, {}, kSeed};
  options.token_slices = {6, 0, 6};
  EXPECT_THROW_WITH(Pipeline(model, partition_uniform(*model, 2), options, loss_function), "6+0+6", "a token or more");
  options.token_slices = {6, 5};
  Pipeline short_slices(model, partition_uniform(*model, 2), options, loss_function);
  EXPECT_THROW_WITH(short_slices.run(batch_of(0), 0), "cover 11 tokens", "sequences have 12");
  options.token_slices = {6, 6};
  options.schedule = "pipedream";
  EXPECT_THROW_WITH(Pipeline(model, partition_uniform(*model, 2), options, loss_function), "not pipedream");
  EXPECT_THROW_WITH(uniform_token_slices(3, 4), "3 tokens into 4");
  EXPECT_EQ(uniform_token_slices(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
}

TEST(TokenSlices, SchedulesReadLikeThePapersFigures) {
  EXPECT_EQ(format_grid(gpipe_schedule(3, 1, 4)),
            "gpipe, 3 stages, 1 micro-batches x 4 token slices (F<micro-batch>.<slice>) (unit forward and backward costs)\n"
            "stage 0 | F0.0 F0.1 F0.2 F0.3 .    .    .    .    B0.3 B0.2 B0.1 B0.0\n"
            "stage 1 | .    F0.0 F0.1 F0.2 F0.3 .    .    B0.3 B0.2 B0.1 B0.0 .\n"
            "stage 2 | .    .    F0.0 F0.1 F0.2 F0.3 B0.3 B0.2 B0.1 B0.0 .    .\n");
  EXPECT_EQ(format_grid(one_f_one_b_schedule(2, 2, 2)),
            "1f1b, 2 stages, 2 micro-batches x 2 token slices (F<micro-batch>.<slice>) (unit forward and backward costs)\n"
            "stage 0 | F0.0 F0.1 F1.0 .    B0.1 F1.1 B0.0 .    B1.1 B1.0\n"
            "stage 1 | .    F0.0 F0.1 B0.1 F1.0 B0.0 F1.1 B1.1 B1.0 .\n");
  // 1F1B over slices holds at most K - s - 1 + S units on stage s, GPipe all M * S.
  for (int k : {2, 4})
    for (int slices : {1, 3}) {
      const ValidationReport one_f_one_b = validate(one_f_one_b_schedule(k, 6, slices)), gpipe = validate(gpipe_schedule(k, 6, slices));
      for (int s = 0; s < k; ++s) {
        EXPECT_EQ(one_f_one_b.peak_in_flight[s], k - s - 1 + slices);
        EXPECT_EQ(gpipe.peak_in_flight[s], 6 * slices);
      }
    }
}

TEST(TokenSlices, TheValidatorRefusesSlicesOutOfOrder) {
  Schedule forwards_swapped = gpipe_schedule(1, 1, 2);  // F0.0 F0.1 B0.1 B0.0 step
  std::swap(forwards_swapped.programs[0][0], forwards_swapped.programs[0][1]);
  EXPECT_THROW_WITH(validate(forwards_swapped), "forward of micro-batch 0.1 before that of the slice before it");
  Schedule backwards_swapped = gpipe_schedule(1, 1, 2);
  std::swap(backwards_swapped.programs[0][2], backwards_swapped.programs[0][3]);
  EXPECT_THROW_WITH(validate(backwards_swapped), "backward of micro-batch 0.0 before that of the slice after it");
  Schedule outside = gpipe_schedule(1, 1, 2);
  outside.programs[0][0].slice = 2;
  EXPECT_THROW_WITH(validate(outside), "token slice 2 outside 0..1");
}

TEST(TokenSlices, TheSimulatorChargesEachSliceItsOwnCost) {
  // One stage, costs 1, 2, 3 forward and twice that backward: makespan 6 + 12.
  CostModel costs = CostModel::uniform(1, 1, 1);
  costs.slice_forward = {{1, 2, 3}};
  costs.slice_backward = {{2, 4, 6}};
  EXPECT_DOUBLE_EQ(simulate(gpipe_schedule(1, 1, 3), costs).makespan, 18.0);
  // Two stages, TeraPipe's order: stage 0's forwards (1 + 2 + 3), stage 1's F0.2 and B0.2
  // (3 + 3), then stage 0's backwards (3 + 2 + 1).
  costs = CostModel::uniform(2, 1, 1);
  costs.slice_forward = {{1, 2, 3}, {1, 2, 3}};
  costs.slice_backward = {{1, 2, 3}, {1, 2, 3}};
  EXPECT_DOUBLE_EQ(simulate(gpipe_schedule(2, 1, 3), costs).makespan, 6 + 3 + 3 + 3 + 2 + 1);
  costs.slice_forward = {{1, 2}};
  EXPECT_THROW_WITH(simulate(gpipe_schedule(2, 1, 3), costs), "2 stages x 3 token slices");
}

// Every slicing of `tokens` into multiples of `granularity` (the last takes the rest).
void every_slicing(int64_t tokens, int64_t granularity, std::vector<int64_t>& prefix, int64_t done,
                   const std::function<void(const std::vector<int64_t>&)>& visit) {
  if (done == tokens) return visit(prefix);
  for (int64_t end = done + granularity;; end += granularity) {
    prefix.push_back(std::min(end, tokens) - done);
    every_slicing(tokens, granularity, prefix, std::min(end, tokens), visit);
    prefix.pop_back();
    if (end >= tokens) break;
  }
}

double brute_force_seconds(const SliceCost& cost, int64_t batch, int64_t tokens, int stages, int64_t granularity,
                           int micro_batches) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<int64_t> prefix;
  every_slicing(tokens, granularity, prefix, 0, [&](const std::vector<int64_t>& lengths) {
    best = std::min(best, slicing_seconds(cost, batch, lengths, stages, micro_batches));
  });
  return best;
}

TEST(SlicePlanner, EqualsBruteForceOnSmallInstances) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> coefficient(0.0, 1.0);
  int instances = 0;
  for (int trial = 0; trial < 40; ++trial) {
    // Random cost models, from overhead-dominated to attention-dominated, and one that is no
    // model at all (a fixed random table), so the planner cannot rely on monotone costs.
    const SliceCostModel model{coefficient(rng) * 5, coefficient(rng), coefficient(rng) * (trial % 2 ? 1 : 0.01), coefficient(rng) * 0.1};
    std::map<std::tuple<int64_t, int64_t, int64_t>, double> table;
    const bool tabulated = trial % 5 == 4;
    const SliceCost cost = [&](int64_t b, int64_t l, int64_t c) {
      if (!tabulated) return model(b, l, c);
      auto [it, fresh] = table.try_emplace({b, l, c}, 0.0);
      if (fresh) it->second = 0.1 + coefficient(rng);
      return it->second;
    };
    const int64_t tokens = 3 + trial % 9, granularity = 1 + trial % 3, batch = 1 + trial % 4;
    const int stages = 1 + trial % 6, micro_batches = 1 + trial % 3;
    const SlicePlan plan = plan_token_slices(cost, batch, tokens, stages, granularity, micro_batches);
    EXPECT_NEAR(plan.seconds, brute_force_seconds(cost, batch, tokens, stages, granularity, micro_batches), 1e-9)
        << "trial " << trial;
    EXPECT_NEAR(plan.seconds, slicing_seconds(cost, batch, plan.lengths, stages, micro_batches), 1e-12);
    check_token_slices(plan.lengths, tokens);
    for (size_t i = 0; i + 1 < plan.lengths.size(); ++i) EXPECT_EQ(plan.lengths[i] % granularity, 0);
    // The outer split: the best over every micro-batch count that divides the batch.
    double best_split = std::numeric_limits<double>::infinity();
    for (int64_t m = 1; m <= batch; ++m)
      if (batch % m == 0) best_split = std::min(best_split, brute_force_seconds(cost, batch / m, tokens, stages, granularity, m));
    EXPECT_NEAR(plan_batch_and_token_slices(cost, batch, tokens, stages, granularity).seconds, best_split, 1e-9);
    ++instances;
  }
  EXPECT_EQ(instances, 40);
}

TEST(SlicePlanner, BeatsUniformSlicesWhenLaterSlicesCostMore) {
  // Attention-dominated: a slice's cost grows with the context before it, so the planner
  // makes later slices shorter, as TeraPipe's do.
  const SliceCostModel attention_heavy{2e-3, 1e-6, 1e-7, 5e-8};
  const int64_t tokens = 2048;
  const int stages = 8;
  const SlicePlan plan = plan_token_slices(attention_heavy, 1, tokens, stages, 16);
  double best_uniform = std::numeric_limits<double>::infinity();
  int best_count = 0;
  for (int n = 1; n <= 128; ++n) {
    const double seconds = slicing_seconds(attention_heavy, 1, uniform_token_slices(tokens, n), stages);
    if (seconds < best_uniform) best_uniform = seconds, best_count = n;
  }
  std::printf("2048 tokens, 8 stages: planner %s %.4f s, best uniform (%d slices) %.4f s: %.2fx\n",
              format_token_slices(plan.lengths).c_str(), plan.seconds, best_count, best_uniform, best_uniform / plan.seconds);
  EXPECT_LT(plan.seconds, best_uniform * 0.95);
  EXPECT_GT(plan.lengths.front(), plan.lengths.back());
}

TEST(SlicePlanner, TooFineAGranularityIsAClearError) {
  const SliceCostModel cost{1e-3, 1e-6, 0, 0, 0};
  EXPECT_THROW_WITH(plan_token_slices(cost, 1, 1024, 2, 1), "1024 units", "granularity of at least 4");
  EXPECT_FALSE(plan_token_slices(cost, 1, 1024, 2, 4).lengths.empty());
}

TEST(SlicePlanner, FitsTheCostModelItWasMeasuredFrom) {
  const SliceCostModel truth{2e-3, 3e-6, 4e-9, 5e-9, 6e-8};
  std::vector<SliceTiming> timings;
  for (int64_t l : {16, 64, 256})
    for (int64_t c : {0, 256, 768}) timings.push_back({2, l, c, truth(2, l, c)});
  const SliceCostModel fitted = SliceCostModel::fit(timings);
  for (const SliceTiming& t : timings) EXPECT_NEAR(fitted(t.batch, t.length, t.context), t.seconds, 1e-9);
  EXPECT_THROW_WITH(SliceCostModel::fit({timings.begin(), timings.begin() + 3}), "3 timings cannot fit 5");
}

TEST(SlicePlanner, MeasuresSlicesOnTheRealStages) {
  auto model = nn::make_gpt(sliced_gpt());
  const StagePlan plan = partition_uniform(*model, 2);
  Generator g(1);
  const std::vector<SliceTiming> timings = measure_slice_costs(stage_modules(*model, plan), randint(0, 31, {2, 16}, g), {4, 8, 16}, {0, 4, 8}, 1);
  ASSERT_EQ(timings.size(), 7u);  // length + context <= 16
  for (const SliceTiming& t : timings) {
    EXPECT_EQ(t.batch, 2);
    EXPECT_GT(t.seconds, 0.0);
    EXPECT_LE(t.length + t.context, 16);
  }
  for (const auto& [name, p] : model->named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
}

}  // namespace
}  // namespace minipipe::pipeline
