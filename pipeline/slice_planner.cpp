#include "pipeline/slice_planner.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "autograd/engine.h"
#include "autograd/node.h"
#include "nn/forward_context.h"
#include "nn/key_value_cache.h"
#include "pipeline/profile.h"
#include "tensor/factories.h"

namespace minipipe::pipeline {

namespace {

constexpr int kFeatures = 5;
using Features = std::array<double, kFeatures>;

Features features(int64_t batch, int64_t length, int64_t context) {
  const double tokens = static_cast<double>(batch) * static_cast<double>(length);
  return {1.0, tokens, tokens * static_cast<double>(context), tokens * static_cast<double>(length),
          static_cast<double>(batch) * static_cast<double>(context)};
}

// Least squares of relative error over the features marked active (the others' weights stay
// 0): each timing's row divided by its time, by the normal equations on columns scaled to at
// most 1, solved by Gaussian elimination.
Features least_squares(const std::vector<SliceTiming>& timings, const std::array<bool, kFeatures>& active) {
  auto row = [](const SliceTiming& t) {
    Features f = features(t.batch, t.length, t.context);
    for (double& x : f) x /= t.seconds;
    return f;
  };
  Features scale{};
  for (const SliceTiming& t : timings) {
    const Features f = row(t);
    for (int i = 0; i < kFeatures; ++i) scale[i] = std::max(scale[i], std::fabs(f[i]));
  }
  double a[kFeatures][kFeatures + 1] = {};
  for (const SliceTiming& t : timings) {
    Features f = row(t);
    for (int i = 0; i < kFeatures; ++i) f[i] = active[i] && scale[i] > 0 ? f[i] / scale[i] : 0.0;
    for (int i = 0; i < kFeatures; ++i) {
      for (int j = 0; j < kFeatures; ++j) a[i][j] += f[i] * f[j];
      a[i][kFeatures] += f[i];  // the target t / t
    }
  }
  for (int i = 0; i < kFeatures; ++i)
    if (!active[i] || scale[i] == 0) a[i][i] = 1.0, a[i][kFeatures] = 0.0;  // pins the weight to 0
  for (int col = 0; col < kFeatures; ++col) {
    int pivot = col;
    for (int r = col + 1; r < kFeatures; ++r)
      if (std::fabs(a[r][col]) > std::fabs(a[pivot][col])) pivot = r;
    std::swap(a[col], a[pivot]);
    if (std::fabs(a[col][col]) < 1e-300) continue;
    for (int r = 0; r < kFeatures; ++r) {
      if (r == col) continue;
      const double factor = a[r][col] / a[col][col];
      for (int c = col; c <= kFeatures; ++c) a[r][c] -= factor * a[col][c];
    }
  }
  Features w{};
  for (int i = 0; i < kFeatures; ++i)
    w[i] = std::fabs(a[i][i]) < 1e-300 || scale[i] == 0 ? 0.0 : a[i][kFeatures] / a[i][i] / scale[i];
  return w;
}

}  // namespace

double SliceCostModel::operator()(int64_t batch, int64_t length, int64_t context) const {
  const Features f = features(batch, length, context);
  return overhead * f[0] + per_token * f[1] + per_token_context * f[2] + per_token_squared * f[3] + per_context * f[4];
}

SliceCostModel SliceCostModel::fit(const std::vector<SliceTiming>& timings) {
  if (timings.size() < kFeatures)
    throw std::invalid_argument("slice cost model: " + std::to_string(timings.size()) +
                                " timings cannot fit 5 coefficients; measure more (length, context) points");
  for (const SliceTiming& t : timings)
    if (!(t.seconds > 0)) throw std::invalid_argument("slice cost model: a timing of " + std::to_string(t.seconds) + " s");
  // A time cannot fall as slices grow: drop a term whose weight comes out negative (noise)
  // and fit the rest again.
  std::array<bool, kFeatures> active;
  active.fill(true);
  Features w{};
  for (int round = 0; round < kFeatures; ++round) {
    w = least_squares(timings, active);
    bool negative = false;
    for (int i = 0; i < kFeatures; ++i)
      if (active[i] && w[i] < 0) active[i] = false, negative = true;
    if (!negative) break;
  }
  for (double& x : w) x = std::max(0.0, x);
  return {w[0], w[1], w[2], w[3], w[4]};
}

std::string SliceCostModel::str() const {
  std::ostringstream out;
  out.precision(3);
  out << "t(b, l, c) = " << overhead * 1e3 << " ms + b*l*" << per_token * 1e6 << " us + b*l*c*" << per_token_context * 1e9
      << " ns + b*l^2*" << per_token_squared * 1e9 << " ns + b*c*" << per_context * 1e9 << " ns";
  return out.str();
}

std::vector<SliceTiming> measure_slice_costs(const std::vector<std::shared_ptr<nn::Sequential>>& stages,
                                             const Tensor& sample, const std::vector<int64_t>& lengths,
                                             const std::vector<int64_t>& contexts, int repeats) {
  return measure_slice_costs(static_cast<int>(stages.size()), [&](int s) { return stages[s]; }, sample, lengths, contexts,
                             repeats);
}

std::vector<SliceTiming> measure_slice_costs(int stages, const StageAt& stage_at, const Tensor& sample,
                                             const std::vector<int64_t>& lengths, const std::vector<int64_t>& contexts,
                                             int repeats) {
  if (sample.dim() != 2) throw std::invalid_argument("measure_slice_costs: the sample must be token ids [batch, tokens]");
  const int64_t batch = sample.shape()[0], tokens = sample.shape()[1];
  std::vector<SliceTiming> timings;
  for (int64_t length : lengths)
    for (int64_t context : contexts)
      if (length > 0 && context >= 0 && length + context <= tokens) timings.push_back({batch, length, context, 0.0});
  GradModeGuard grad_on(true);
  Tensor stage_input = sample;  // the whole sequences' input of each stage in turn
  for (int s = 0; s < stages; ++s) {
    const std::shared_ptr<nn::Sequential> stage = stage_at(s);
    for (SliceTiming& timing : timings) {
      std::vector<double> seconds;
      for (int r = -1; r < std::max(1, repeats); ++r) {  // run -1 warms up
        nn::KeyValueCache cache;
        nn::ForwardContext context{.token_offset = 0, .sequence_tokens = timing.context + timing.length};
        if (timing.context > 0) {  // the earlier tokens' keys and values, without a graph
          NoGradGuard no_graph;
          nn::ForwardContextGuard guard(context);
          nn::KeyValueCache::Scope scope(cache, 0);
          stage->forward(stage_input.narrow(1, 0, timing.context).contiguous());
        }
        context.token_offset = timing.context;
        Tensor input = stage_input.narrow(1, timing.context, timing.length).contiguous();
        if (input.dtype() == DType::Float32) input.set_requires_grad(true);
        const auto start = std::chrono::steady_clock::now();
        {
          nn::ForwardContextGuard guard(context);
          nn::KeyValueCache::Scope scope(cache, timing.context > 0 ? 1 : 0);
          const Tensor output = stage->forward(input);
          backward({output}, {ones(output.shape(), DType::Float32, output.device())});
        }
        if (r >= 0) seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
      timing.seconds = std::max(timing.seconds, median_seconds(seconds));  // the slowest stage
    }
    stage->zero_grad();
    NoGradGuard no_graph;
    stage_input = stage->forward(stage_input);
  }
  return timings;
}

SliceCostModel profile_slice_costs(const std::vector<std::shared_ptr<nn::Sequential>>& stages, const Tensor& sample,
                                   int repeats) {
  return profile_slice_costs(static_cast<int>(stages.size()), [&](int s) { return stages[s]; }, sample, repeats);
}

SliceCostModel profile_slice_costs(int stages, const StageAt& stage_at, const Tensor& sample, int repeats) {
  const int64_t tokens = sample.dim() == 2 ? sample.shape()[1] : 0;
  std::vector<int64_t> lengths, contexts;
  for (int64_t length = default_slice_granularity(tokens); length < tokens; length *= 2) lengths.push_back(length);
  lengths.push_back(tokens);
  for (int64_t quarter : {0, 1, 2, 3})
    if (contexts.empty() || quarter * tokens / 4 != contexts.back()) contexts.push_back(quarter * tokens / 4);
  return SliceCostModel::fit(measure_slice_costs(stages, stage_at, sample, lengths, contexts, repeats));
}

double slicing_seconds(const SliceCost& cost, int64_t batch, const std::vector<int64_t>& lengths, int stages,
                       int micro_batches) {
  double sum = 0, slowest = 0;
  int64_t context = 0;
  for (int64_t length : lengths) {
    const double t = cost(batch, length, context);
    sum += t, slowest = std::max(slowest, t);
    context += length;
  }
  return micro_batches * sum + (stages - 1) * slowest;
}

int64_t default_slice_granularity(int64_t tokens) { return std::max<int64_t>(1, (tokens + 63) / 64); }

SlicePlan plan_token_slices(const SliceCost& cost, int64_t batch, int64_t tokens, int stages, int64_t granularity,
                            int micro_batches) {
  if (tokens < 1 || stages < 1 || granularity < 1 || batch < 1 || micro_batches < 1)
    throw std::invalid_argument("plan_token_slices: tokens, stages, granularity, batch and micro-batches must be positive");
  const int64_t units = (tokens + granularity - 1) / granularity;
  // The program is O(units^4) at worst (candidates x O(units^2) each): keep it to seconds.
  constexpr int64_t kMostUnits = 256;
  if (units > kMostUnits)
    throw std::invalid_argument("plan_token_slices: " + std::to_string(tokens) + " tokens at a granularity of " +
                                std::to_string(granularity) + " make " + std::to_string(units) +
                                " units; use a granularity of at least " +
                                std::to_string((tokens + kMostUnits - 1) / kMostUnits));
  auto position = [&](int64_t unit) { return std::min(unit * granularity, tokens); };
  // t[i][j]: the slice from unit i to unit j (exclusive).
  std::vector<std::vector<double>> t(units + 1, std::vector<double>(units + 1, 0.0));
  std::vector<double> candidates;
  for (int64_t i = 0; i < units; ++i)
    for (int64_t j = i + 1; j <= units; ++j) {
      t[i][j] = cost(batch, position(j) - position(i), position(i));
      candidates.push_back(t[i][j]);
    }
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());

  const double infinity = std::numeric_limits<double>::infinity();
  std::vector<double> least(units + 1);
  std::vector<int64_t> from(units + 1);
  auto least_sum = [&](double cap) {  // S*(n) with every slice at most `cap`
    least.assign(units + 1, infinity);
    least[0] = 0;
    for (int64_t j = 1; j <= units; ++j)
      for (int64_t i = 0; i < j; ++i)
        if (t[i][j] <= cap && least[i] + t[i][j] < least[j]) least[j] = least[i] + t[i][j], from[j] = i;
    return least[units];
  };
  const double unconstrained = least_sum(infinity);  // no slicing sums to less
  SlicePlan best{micro_batches, {}, infinity};
  for (double cap : candidates) {
    if (micro_batches * unconstrained + (stages - 1) * cap >= best.seconds) break;
    if (least_sum(cap) == infinity) continue;
    std::vector<int64_t> lengths;
    for (int64_t j = units; j > 0; j = from[j]) lengths.push_back(position(j) - position(from[j]));
    std::reverse(lengths.begin(), lengths.end());
    const double seconds = slicing_seconds(cost, batch, lengths, stages, micro_batches);
    if (seconds < best.seconds) best = {micro_batches, lengths, seconds};
  }
  return best;
}

SlicePlan plan_batch_and_token_slices(const SliceCost& cost, int64_t batch, int64_t tokens, int stages,
                                      int64_t granularity) {
  SlicePlan best;
  best.seconds = std::numeric_limits<double>::infinity();
  for (int64_t m = 1; m <= batch; ++m) {
    if (batch % m != 0) continue;
    SlicePlan plan = plan_token_slices(cost, batch / m, tokens, stages, granularity, static_cast<int>(m));
    if (plan.seconds < best.seconds) best = plan;
  }
  return best;
}

}  // namespace minipipe::pipeline
