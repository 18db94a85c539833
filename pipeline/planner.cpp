#include "pipeline/planner.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace minipipe::pipeline {

std::vector<int> PipelinePlan::balance() const {
  std::vector<int> out;
  for (const PlannedStage& s : stages) out.push_back(s.layers);
  return out;
}

std::vector<int> PipelinePlan::replicas() const {
  std::vector<int> out;
  for (const PlannedStage& s : stages) out.push_back(s.replicas);
  return out;
}

bool PipelinePlan::replicated() const {
  for (const PlannedStage& s : stages)
    if (s.replicas > 1) return true;
  return false;
}

std::string PipelinePlan::str(const nn::Sequential* model) const {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "  %-6s %-34s %8s %12s %12s %12s %10s\n", "stage", "layers", "replicas", "compute ms",
                "sync ms", "time ms", "memory MiB");
  out << line;
  for (size_t s = 0; s < stages.size(); ++s) {
    const PlannedStage& p = stages[s];
    const int last = p.first_layer + p.layers - 1;
    std::string layers = std::to_string(p.first_layer) + ".." + std::to_string(last);
    if (model) layers += " (" + model->name_of(p.first_layer) + (last > p.first_layer ? " .. " + model->name_of(last) : "") + ")";
    std::snprintf(line, sizeof line, "  %-6zu %-34s %8d %12.3f %12.3f %12.3f %10.1f\n", s, layers.c_str(), p.replicas,
                  1e3 * p.compute_seconds, 1e3 * p.weight_sync_seconds, 1e3 * p.seconds,
                  static_cast<double>(p.memory_bytes) / (1 << 20));
    out << line;
  }
  std::snprintf(line, sizeof line, "  predicted time per mini-batch %.3f ms; bottleneck: ", 1e3 * seconds_per_mini_batch);
  out << line << bottleneck << "\n";
  return out.str();
}

double compute_seconds(const std::vector<LayerProfile>& layers, int first, int count) {
  double seconds = 0;
  for (int l = first; l < first + count; ++l) seconds += layers[l].forward_seconds + layers[l].backward_seconds;
  return seconds;
}

double weight_sync_seconds(const std::vector<LayerProfile>& layers, int first, int count, int replicas, const LinkModel& link) {
  if (replicas <= 1) return 0.0;
  double parameter_bytes = 0;
  for (int l = first; l < first + count; ++l) parameter_bytes += static_cast<double>(layers[l].parameter_bytes);
  const double m = replicas;
  return link.message_seconds(4.0 * (m - 1) * parameter_bytes / m);
}

double stage_seconds(const std::vector<LayerProfile>& layers, int first, int count, int replicas, const LinkModel& link) {
  return std::max(compute_seconds(layers, first, count), weight_sync_seconds(layers, first, count, replicas, link)) / replicas;
}

double boundary_seconds(const std::vector<LayerProfile>& layers, int layer, const LinkModel& link) {
  return link.message_seconds(static_cast<double>(layers[layer].output_bytes));
}

int64_t stage_memory_bytes(const std::vector<LayerProfile>& layers, int first, int count, int workers) {
  int64_t parameters = 0, outputs = 0;
  for (int l = first; l < first + count; ++l) {
    parameters += layers[l].parameter_bytes;
    outputs += layers[l].output_bytes;
  }
  return (workers + 1) * parameters + workers * outputs;
}

namespace {

// How the best pipeline over the first j layers with m workers ends: its last stage holds
// layers first..j-1 on `replicas` workers (first == 0: a single stage).
struct Choice {
  double seconds = std::numeric_limits<double>::infinity();
  int first = -1, replicas = 0;
};

}  // namespace

PipelinePlan plan_pipeline(const std::vector<LayerProfile>& layers, const PlannerOptions& options) {
  const int n = static_cast<int>(layers.size()), workers = options.workers;
  if (n < 1) throw std::invalid_argument("plan_pipeline: the model has no layers");
  if (workers < 1) throw std::invalid_argument("plan_pipeline: need at least 1 worker, got " + std::to_string(workers));
  if (options.link.bytes_per_second <= 0) throw std::invalid_argument("plan_pipeline: the link's bandwidth must be positive");
  const int most_replicas = options.most_replicas > 0 ? options.most_replicas : workers;
  auto fits = [&](int first, int count) {
    return options.memory_per_worker <= 0 || stage_memory_bytes(layers, first, count, workers) <= options.memory_per_worker;
  };
  // best[j][m], j = 1..n layers, m = 1..workers.
  std::vector<std::vector<Choice>> best(n + 1, std::vector<Choice>(workers + 1));
  for (int j = 1; j <= n; ++j)
    for (int m = 1; m <= workers; ++m) {
      Choice& choice = best[j][m];
      if (m <= most_replicas && fits(0, j)) choice = {stage_seconds(layers, 0, j, m, options.link), 0, m};
      for (int i = 1; i < j; ++i) {  // the last stage holds layers i..j-1
        if (!fits(i, j - i)) continue;
        const double boundary = 2 * boundary_seconds(layers, i - 1, options.link);
        for (int last = 1; last < m && last <= most_replicas; ++last) {
          const double seconds = std::max({best[i][m - last].seconds, boundary, stage_seconds(layers, i, j - i, last, options.link)});
          if (seconds < choice.seconds) choice = {seconds, i, last};
        }
      }
    }
  if (best[n][workers].seconds == std::numeric_limits<double>::infinity())
    throw std::invalid_argument("plan_pipeline: no way to place " + std::to_string(n) + " layers on " + std::to_string(workers) +
                                " workers within " + std::to_string(options.memory_per_worker >> 20) +
                                " MiB each; give more memory or more workers");
  PipelinePlan plan;
  plan.seconds_per_mini_batch = best[n][workers].seconds;
  for (int j = n, m = workers; j > 0;) {
    const Choice& c = best[j][m];
    PlannedStage stage{c.first, j - c.first, c.replicas};
    stage.seconds = stage_seconds(layers, stage.first_layer, stage.layers, stage.replicas, options.link);
    stage.compute_seconds = compute_seconds(layers, stage.first_layer, stage.layers);
    stage.weight_sync_seconds = weight_sync_seconds(layers, stage.first_layer, stage.layers, stage.replicas, options.link);
    stage.memory_bytes = stage_memory_bytes(layers, stage.first_layer, stage.layers, workers);
    plan.stages.insert(plan.stages.begin(), stage);
    j = c.first;
    m -= c.replicas;
  }
  // Name the bottleneck: the stage or boundary whose time is the pipeline's.
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const PlannedStage& p = plan.stages[s];
    if (p.seconds == plan.seconds_per_mini_batch)
      plan.bottleneck = "stage " + std::to_string(s) + "'s " +
                        (p.replicas > 1 && p.weight_sync_seconds > p.compute_seconds ? "weight synchronisation among its " +
                                                                                               std::to_string(p.replicas) + " replicas"
                                                                                         : std::string("compute"));
    else if (s > 0 && 2 * boundary_seconds(layers, p.first_layer - 1, options.link) == plan.seconds_per_mini_batch)
      plan.bottleneck = "the activations and gradients between stages " + std::to_string(s - 1) + " and " + std::to_string(s);
    if (!plan.bottleneck.empty()) break;
  }
  return plan;
}

}  // namespace minipipe::pipeline
