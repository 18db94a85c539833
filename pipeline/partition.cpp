#include "pipeline/partition.h"

#include <algorithm>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "nn/model_recipe.h"
#include "pipeline/profile.h"

namespace minipipe::pipeline {

int StagePlan::first_layer(int stage) const {
  int first = 0;
  for (int s = 0; s < stage; ++s) first += layers_per_stage[s];
  return first;
}

std::string StagePlan::str(const nn::Sequential& model) const {
  std::ostringstream out;
  out << "partition by " << method << " into " << stages() << " stages\n";
  for (int s = 0; s < stages(); ++s) {
    const int first = first_layer(s), last = first + layers_per_stage[s] - 1;
    out << "  stage " << s << ": layers " << first << ".." << last << " (" << model.name_of(first)
        << (last > first ? " .. " + model.name_of(last) : "") << "), " << parameters[s] << " parameters, cost "
        << predicted_cost[s] << "\n";
  }
  return out.str();
}

namespace {

int layer_count(const nn::Sequential& model) { return static_cast<int>(model.size()); }

void check_stages(const nn::Sequential& model, int stages) {
  if (stages < 1 || stages > layer_count(model))
    throw std::invalid_argument("cannot cut a model of " + std::to_string(layer_count(model)) + " layers into " +
                                std::to_string(stages) + " stages (need 1 <= stages <= layers)");
}

std::vector<double> parameter_counts(const nn::Sequential& model) {
  std::vector<double> counts;
  for (size_t i = 0; i < model.size(); ++i) counts.push_back(static_cast<double>(nn::layer_parameter_count(*model[i])));
  return counts;
}

StagePlan make_plan(const nn::Sequential& model, std::string method, const std::vector<int>& balance,
                    const std::vector<double>& layer_costs) {
  StagePlan plan{std::move(method), balance, {}, {}};
  int layer = 0;
  for (int count : balance) {
    int64_t params = 0;
    double cost = 0;
    for (int i = 0; i < count; ++i, ++layer) {
      params += nn::layer_parameter_count(*model[layer]);
      cost += layer_costs[layer];
    }
    plan.parameters.push_back(params);
    plan.predicted_cost.push_back(cost);
  }
  return plan;
}

}  // namespace

std::vector<int> balance_by_cost(const std::vector<double>& costs, int stages) {
  const int layers = static_cast<int>(costs.size());
  if (stages < 1 || stages > layers)
    throw std::invalid_argument("cannot cut " + std::to_string(layers) + " layers into " + std::to_string(stages) + " stages");
  std::vector<double> prefix(layers + 1, 0.0);
  for (int i = 0; i < layers; ++i) prefix[i + 1] = prefix[i] + costs[i];
  const double infinity = std::numeric_limits<double>::infinity();
  // best[k][i]: the smallest possible largest stage when the first i layers form k stages.
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(layers + 1, infinity));
  std::vector<std::vector<int>> cut(stages + 1, std::vector<int>(layers + 1, 0));
  best[0][0] = 0.0;
  for (int k = 1; k <= stages; ++k)
    for (int i = k; i <= layers; ++i)
      for (int j = k - 1; j < i; ++j) {  // the last stage holds layers j..i-1
        const double largest = std::max(best[k - 1][j], prefix[i] - prefix[j]);
        if (largest < best[k][i]) best[k][i] = largest, cut[k][i] = j;
      }
  std::vector<int> balance(stages);
  for (int k = stages, i = layers; k > 0; --k) {
    balance[k - 1] = i - cut[k][i];
    i = cut[k][i];
  }
  return balance;
}

StagePlan partition_explicit(const nn::Sequential& model, const std::vector<int>& balance) {
  int total = 0;
  for (int count : balance) {
    if (count < 1) throw std::invalid_argument("balance: every stage needs at least one layer");
    total += count;
  }
  if (total != layer_count(model))
    throw std::invalid_argument("balance covers " + std::to_string(total) + " layers but the model has " +
                                std::to_string(layer_count(model)) + "; a partition must hold every layer exactly once");
  return make_plan(model, "explicit balance", balance, std::vector<double>(model.size(), 1.0));
}

StagePlan partition_uniform(const nn::Sequential& model, int stages) {
  check_stages(model, stages);
  const std::vector<double> ones(model.size(), 1.0);
  return make_plan(model, "layer count", balance_by_cost(ones, stages), ones);
}

StagePlan partition_by_parameters(const nn::Sequential& model, int stages) {
  check_stages(model, stages);
  const std::vector<double> counts = parameter_counts(model);
  return make_plan(model, "parameter count", balance_by_cost(counts, stages), counts);
}

StagePlan partition_by_time(nn::Sequential& model, int stages, const Tensor& sample, int repeats) {
  check_stages(model, stages);
  return partition_by_time(model, stages, profile_layers(model, sample, repeats));
}

StagePlan partition_by_time(const nn::Sequential& model, int stages, const std::vector<LayerProfile>& profiles) {
  check_stages(model, stages);
  std::vector<double> seconds;
  for (const LayerProfile& layer : profiles) seconds.push_back(layer.forward_seconds + layer.backward_seconds);
  return make_plan(model, "profiled time (s)", balance_by_cost(seconds, stages), seconds);
}

StagePlan make_partition(nn::Sequential& model, int stages, const std::string& method, const Tensor& sample) {
  if (method == "uniform") return partition_uniform(model, stages);
  if (method == "params") return partition_by_parameters(model, stages);
  if (method == "time") return partition_by_time(model, stages, sample);
  std::vector<int> balance;
  std::stringstream list(method);
  std::string item;
  while (std::getline(list, item, ',')) {
    try {
      balance.push_back(std::stoi(item));
    } catch (const std::exception&) {
      throw std::invalid_argument("unknown partition '" + method + "': use uniform, params, time or a balance like 3,3,2");
    }
  }
  if (static_cast<int>(balance.size()) != stages)
    throw std::invalid_argument("balance '" + method + "' has " + std::to_string(balance.size()) + " stages but " +
                                std::to_string(stages) + " were asked for");
  return partition_explicit(model, balance);
}

std::shared_ptr<nn::Sequential> stage_module(const nn::Sequential& model, const StagePlan& plan, int stage) {
  auto out = std::make_shared<nn::Sequential>();
  const int first = plan.first_layer(stage);
  for (int i = first; i < first + plan.layers_per_stage[stage]; ++i) out->add(model[i], model.name_of(i));
  return out;
}

std::vector<std::shared_ptr<nn::Sequential>> stage_modules(const nn::Sequential& model, const StagePlan& plan) {
  std::vector<std::shared_ptr<nn::Sequential>> stages;
  for (int s = 0; s < plan.stages(); ++s) stages.push_back(stage_module(model, plan, s));
  return stages;
}

}  // namespace minipipe::pipeline
