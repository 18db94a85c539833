#include "pipeline/zb_auto.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "pipeline/prediction.h"
#include "pipeline/trace.h"

namespace minipipe::pipeline {

namespace {

// One greedy placement in time: each stage, when it is free, takes the first of these that it
// can (section 3's heuristic): a ready B; its oldest W if `waiting_weights` wait; a ready F if
// fewer than limit[s] micro-batches are in flight; its oldest W; else it waits for the next
// unit another stage finishes.
Schedule place(int stages, int micro_batches, const CostModel& costs, const std::vector<int>& limit, int waiting_weights) {
  Schedule s{"zb-auto", stages, micro_batches, std::vector<Program>(stages)};
  constexpr double never = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> forward_done(stages, std::vector<double>(micro_batches, never)),
      input_done(stages, std::vector<double>(micro_batches, never));
  std::vector<int> next_forward(stages, 0), next_backward(stages, 0), weights_done(stages, 0);
  std::vector<std::deque<int>> waiting(stages);
  std::vector<double> free_at(stages, 0.0), idle_since(stages, never);  // idle_since: never while it works
  auto cost = [&](int stage, Op op) { return costs.compute_cost(stage, Instruction{op, 0}); };
  for (int finished = 0; finished < stages;) {
    // The stage free soonest decides next (the lowest index on a tie).
    int stage = -1;
    for (int t = 0; t < stages; ++t)
      if (weights_done[t] < micro_batches && (stage < 0 || free_at[t] < free_at[stage])) stage = t;
    const double now = free_at[stage];
    if (now == never) throw std::logic_error("zb-auto: every stage waits for another");
    int &f = next_forward[stage], &b = next_backward[stage];
    const double forward_input = f >= micro_batches ? never
                                 : stage == 0       ? 0.0
                                                    : forward_done[stage - 1][f] + costs.communication;
    const double backward_input = b >= f                 ? never
                                  : stage + 1 == stages ? forward_done[stage][b]
                                                         : input_done[stage + 1][b] + costs.communication;
    Program& program = s.programs[stage];
    auto run = [&](Op op, int m) {
      program.push_back({op, m});
      const double done = now + cost(stage, op);
      free_at[stage] = done, idle_since[stage] = never;
      for (int t = 0; t < stages; ++t)  // an idle stage looks again when this unit is done
        if (idle_since[t] != never) free_at[t] = std::min(free_at[t], std::max(idle_since[t], done));
      return done;
    };
    auto run_weight = [&] {
      run(Op::BackwardWeight, waiting[stage].front());
      waiting[stage].pop_front();
      if (++weights_done[stage] == micro_batches) ++finished;
    };
    if (backward_input <= now) {
      input_done[stage][b] = run(Op::BackwardInput, b);
      waiting[stage].push_back(b++);
    } else if (static_cast<int>(waiting[stage].size()) >= waiting_weights) {
      run_weight();
    } else if (forward_input <= now && f - b < limit[stage]) {
      forward_done[stage][f] = run(Op::Forward, f);
      ++f;
    } else if (!waiting[stage].empty()) {
      run_weight();
    } else {  // idle until an input it knows of arrives, or another stage finishes a unit
      free_at[stage] = std::min(backward_input, f - b < limit[stage] ? forward_input : never);
      idle_since[stage] = now;
    }
  }
  add_communication(s);
  return s;
}

}  // namespace

CostModel zb_auto_costs_from_trace(const std::string& path, int stages, std::string* note) {
  const std::vector<TraceEvent> events = read_chrome_trace(path);
  int micro_batches = 1;
  bool split = false;
  for (const TraceEvent& e : events) {
    micro_batches = std::max(micro_batches, e.instruction.micro_batch + 1);
    split = split || e.instruction.op == Op::BackwardWeight;
  }
  CostModel costs;
  try {
    costs = costs_from_trace(events, make_schedule("1f1b", stages, micro_batches));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("--costs-from " + path + ": " + e.what() + " (give a trace of the same --stages, one chunk each)");
  }
  for (double& c : costs.forward) c *= 1e-6;  // the trace's microseconds, in seconds like the profile's
  for (double& c : costs.backward) c *= 1e-6;
  for (double& c : costs.backward_weight) c *= 1e-6;
  if (!split) costs.backward_weight.clear();
  if (note)
    *note = "costs from " + path + (split ? "" : " (its backwards are whole: W taken as half of each)");
  return costs;
}

CostModel zb_auto_costs_from_layers(const std::vector<LayerProfile>& layers, const std::vector<int>& layers_per_stage) {
  const int stages = static_cast<int>(layers_per_stage.size());
  CostModel costs = CostModel::uniform(stages, 0, 0);
  costs.backward_weight.assign(stages, 0);
  size_t layer = 0;
  for (int s = 0; s < stages; ++s)
    for (int i = 0; i < layers_per_stage[s]; ++i, ++layer) {
      costs.forward[s] += layers.at(layer).forward_seconds;
      costs.backward[s] += layers.at(layer).backward_seconds;
      costs.backward_weight[s] += layers.at(layer).weight_seconds;
    }
  return costs;
}

std::string format_costs(const CostModel& costs) {
  std::string text;
  char number[64];
  for (const std::vector<double>* list : {&costs.forward, &costs.backward, &costs.backward_weight}) {
    for (double c : *list) std::snprintf(number, sizeof number, "%a ", c), text += number;
    text += "\n";
  }
  return text;
}

CostModel parse_costs(const std::string& text) {
  CostModel costs;
  std::istringstream lines(text);
  std::string line;
  for (std::vector<double>* list : {&costs.forward, &costs.backward, &costs.backward_weight}) {
    std::getline(lines, line);
    std::istringstream numbers(line);
    for (std::string number; numbers >> number;) list->push_back(std::strtod(number.c_str(), nullptr));
  }
  return costs;
}

Schedule zb_auto_schedule(int stages, int micro_batches, const CostModel& costs, int max_in_flight) {
  if (stages < 1 || micro_batches < 1)
    throw std::invalid_argument("zb-auto: need at least 1 stage and 1 micro-batch, got " + std::to_string(stages) +
                                " and " + std::to_string(micro_batches));
  if (static_cast<int>(costs.forward.size()) != stages || static_cast<int>(costs.backward.size()) != stages)
    throw std::invalid_argument("zb-auto: the costs name " + std::to_string(costs.forward.size()) + " stages, the schedule has " +
                                std::to_string(stages));
  if (max_in_flight == 0) max_in_flight = stages;
  if (max_in_flight < 1)
    throw std::invalid_argument("zb-auto: --max-in-flight is " + std::to_string(max_in_flight) + "; give 1 or more micro-batches");
  Schedule best = zero_bubble_schedule("zb-h1", stages, micro_batches);  // never worse than this
  double best_time = max_in_flight >= stages ? simulate(best, costs).makespan : std::numeric_limits<double>::infinity();
  for (int extra = 0; extra <= max_in_flight; ++extra) {
    std::vector<int> limit(stages);
    for (int s = 0; s < stages; ++s) limit[s] = std::min(max_in_flight, stages - s + extra);
    for (int waiting : {stages - 1, stages, 2 * stages, micro_batches}) {
      Schedule candidate = place(stages, micro_batches, costs, limit, std::max(1, waiting));
      const double time = simulate(candidate, costs).makespan;
      if (time < best_time - 1e-12) best = std::move(candidate), best_time = time;
    }
  }
  best.name = "zb-auto";
  return best;
}

}  // namespace minipipe::pipeline
