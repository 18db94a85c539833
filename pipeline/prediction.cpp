#include "pipeline/prediction.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>

namespace minipipe::pipeline {

namespace {

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double first_start(const std::vector<TraceEvent>& events) {
  double first = events.empty() ? 0 : events.front().start_us;
  for (const TraceEvent& e : events) first = std::min(first, e.start_us);
  return first;
}

using Key = std::tuple<int, Op, int, int, int>;  // worker, op, micro-batch, slice, chunk
Key key_of(const TraceEvent& e) {
  return {e.worker, e.instruction.op, e.instruction.micro_batch, e.instruction.slice, e.instruction.chunk};
}

}  // namespace

CostModel costs_from_trace(const std::vector<TraceEvent>& measured, const Schedule& schedule, double communication_us) {
  const int stages = schedule.stages, slices = schedule.token_slices;
  // [stage][slice] durations of each kind of compute instruction.
  std::vector<std::vector<std::vector<double>>> forward(stages, std::vector<std::vector<double>>(slices)), backward = forward,
                                                 input = forward, weight = forward;
  for (const TraceEvent& e : measured) {
    if (e.worker < 0 || e.worker >= schedule.workers())
      throw std::invalid_argument("the trace has worker " + std::to_string(e.worker) + ", the schedule " +
                                  std::to_string(schedule.workers()) + " workers: give simulate the traced run's --stages, "
                                  "--schedule and --micro-batches");
    const int s = schedule.stage_of(e.worker), i = e.instruction.slice;
    if (i < 0 || i >= slices)
      throw std::invalid_argument("the trace has token slice " + std::to_string(i) + ": give simulate the traced run's --token-slices");
    const double took = e.end_us - e.start_us;
    switch (e.instruction.op) {
      case Op::Forward: forward[s][i].push_back(took); break;
      case Op::Backward: backward[s][i].push_back(took); break;
      case Op::BackwardInput: input[s][i].push_back(took); break;
      case Op::BackwardWeight: weight[s][i].push_back(took); break;
      default: break;
    }
  }
  CostModel costs;
  costs.communication = communication_us;
  auto all_slices = [](const std::vector<std::vector<double>>& per_slice) {
    std::vector<double> all;
    for (const auto& v : per_slice) all.insert(all.end(), v.begin(), v.end());
    return median(all);
  };
  for (int s = 0; s < stages; ++s) {
    const double w = all_slices(weight[s]);
    costs.forward.push_back(all_slices(forward[s]));
    costs.backward.push_back(all_slices(backward[s]) + all_slices(input[s]) + w);
    costs.backward_weight.push_back(w);
    if (costs.forward.back() <= 0)
      throw std::invalid_argument("the trace has no Forward of stage " + std::to_string(s) + ": is it of this schedule?");
    if (slices > 1) {
      costs.slice_forward.emplace_back();
      costs.slice_backward.emplace_back();
      for (int i = 0; i < slices; ++i) {
        costs.slice_forward.back().push_back(median(forward[s][i]));
        costs.slice_backward.back().push_back(median(backward[s][i]));
      }
    }
  }
  return costs;
}

std::vector<InstructionTimes> match_instructions(const std::vector<TraceEvent>& measured,
                                                 const std::vector<TraceEvent>& predicted) {
  std::map<Key, const TraceEvent*> by_key;
  for (const TraceEvent& e : predicted)
    if (is_compute(e.instruction.op)) by_key[key_of(e)] = &e;
  const double measured_origin = first_start(measured), predicted_origin = first_start(predicted);
  std::vector<InstructionTimes> out;
  for (const TraceEvent& e : measured) {
    if (!is_compute(e.instruction.op)) continue;
    const auto it = by_key.find(key_of(e));
    if (it == by_key.end())
      throw std::invalid_argument(std::string("the traced ") + op_name(e.instruction.op) + " of micro-batch " +
                                  std::to_string(e.instruction.micro_batch) + " on worker " + std::to_string(e.worker) +
                                  " is not in the simulated schedule: give simulate the traced run's flags");
    const TraceEvent& p = *it->second;
    out.push_back({e.worker, e.instruction, e.start_us - measured_origin, e.end_us - measured_origin,
                   p.start_us - predicted_origin, p.end_us - predicted_origin});
  }
  if (out.size() != by_key.size())
    throw std::invalid_argument("the trace has " + std::to_string(out.size()) + " compute instructions, the simulated schedule " +
                                std::to_string(by_key.size()) + ": give simulate the traced run's flags");
  return out;
}

}  // namespace minipipe::pipeline
