#include "pipeline/simulator.h"

#include <algorithm>
#include <deque>
#include <string>

#include "pipeline/weight_versions.h"

namespace minipipe::pipeline {

CostModel CostModel::uniform(int stages, double forward_cost, double backward_cost) {
  return {std::vector<double>(stages, forward_cost), std::vector<double>(stages, backward_cost), 0.0, {}, {}, {}};
}

double CostModel::compute_cost(int stage, const Instruction& instruction) const {
  const bool forward_op = instruction.op == Op::Forward;
  const auto& per_slice = forward_op ? slice_forward : slice_backward;
  if (!per_slice.empty()) return per_slice.at(stage).at(instruction.slice);
  return forward_op ? forward[stage] : backward[stage];
}

double theoretical_bubble_fraction(int stages, int micro_batches) {
  return static_cast<double>(stages - 1) / static_cast<double>(micro_batches + stages - 1);
}

namespace {

struct Message {
  int micro_batch, slice;
  double arrival;
};

std::string describe(int stage, const Instruction& instruction) {
  return "stage " + std::to_string(stage) + " " + op_name(instruction.op) +
         (instruction.micro_batch >= 0 ? "(micro-batch " + std::to_string(instruction.micro_batch) +
                                             (instruction.slice > 0 ? ", slice " + std::to_string(instruction.slice) : "") + ")"
                                       : "") +
         (instruction.version >= 0 ? "[version " + std::to_string(instruction.version) + "]" : "");
}

}  // namespace

SimulationResult simulate(const Schedule& schedule, const CostModel& costs) {
  const int stages = schedule.stages;
  if (static_cast<int>(schedule.programs.size()) != stages || static_cast<int>(costs.forward.size()) != stages ||
      static_cast<int>(costs.backward.size()) != stages)
    throw ScheduleError("simulate: the schedule, its programs and the cost model must all have " +
                        std::to_string(stages) + " stages");
  for (const auto* per_slice : {&costs.slice_forward, &costs.slice_backward})
    if (!per_slice->empty() && (static_cast<int>(per_slice->size()) != stages ||
                                std::any_of(per_slice->begin(), per_slice->end(), [&](const std::vector<double>& row) {
                                  return static_cast<int>(row.size()) != schedule.token_slices;
                                })))
      throw ScheduleError("simulate: per-slice costs must be given for " + std::to_string(stages) + " stages x " +
                          std::to_string(schedule.token_slices) + " token slices");
  // activations[s]: stage s -> s + 1; gradients[s]: stage s + 1 -> s.
  std::vector<std::deque<Message>> activations(stages), gradients(stages);
  std::vector<size_t> next(stages, 0);
  std::vector<double> clock(stages, 0.0), busy(stages, 0.0);
  std::vector<int> in_flight(stages, 0);
  std::vector<WeightVersionState> versions(stages);
  SimulationResult result;
  result.peak_in_flight.assign(stages, 0);
  result.peak_weight_versions.assign(stages, 1);

  auto done = [&](int s) { return next[s] >= schedule.programs[s].size(); };
  bool progress = true;
  while (progress) {
    progress = false;
    for (int s = 0; s < stages; ++s) {
      while (!done(s)) {
        const Instruction& instruction = schedule.programs[s][next[s]];
        const int m = instruction.micro_batch;
        double start = clock[s], end = clock[s];
        auto receive = [&](std::deque<Message>& channel, const char* what) {
          if (channel.empty()) return false;
          if (channel.front().micro_batch != m || channel.front().slice != instruction.slice)
            throw ScheduleError(describe(s, instruction) + " waits for the " + what + " of micro-batch " +
                                unit_label(instruction, schedule.token_slices > 1) + ", but the next one its neighbour sends is micro-batch " +
                                unit_label({instruction.op, channel.front().micro_batch, -1, channel.front().slice}, schedule.token_slices > 1) +
                                ": sends and receives are in different orders, which deadlocks");
          start = end = std::max(clock[s], channel.front().arrival);
          channel.pop_front();
          return true;
        };
        bool ran = true;
        switch (instruction.op) {
          case Op::Forward:
          case Op::Backward: {
            const double cost = costs.compute_cost(s, instruction);
            end = start + cost;
            busy[s] += cost;
            if (instruction.op == Op::Forward)
              result.peak_in_flight[s] = std::max(result.peak_in_flight[s], ++in_flight[s]);
            else
              --in_flight[s];
            break;
          }
          case Op::SendActivation:
            if (s + 1 >= stages) throw ScheduleError(describe(s, instruction) + ": the last stage has no next stage");
            activations[s].push_back({m, instruction.slice, clock[s] + costs.communication});
            break;
          case Op::SendGradient:
            if (s == 0) throw ScheduleError(describe(s, instruction) + ": the first stage has no previous stage");
            gradients[s - 1].push_back({m, instruction.slice, clock[s] + costs.communication});
            break;
          case Op::ReceiveActivation:
            if (s == 0) throw ScheduleError(describe(s, instruction) + ": the first stage has no previous stage");
            ran = receive(activations[s - 1], "activation");
            break;
          case Op::ReceiveGradient:
            if (s + 1 >= stages) throw ScheduleError(describe(s, instruction) + ": the last stage has no next stage");
            ran = receive(gradients[s], "gradient");
            break;
          case Op::OptimizerStep:
            if (!costs.update.empty()) {
              end = start + costs.update.at(s);
              busy[s] += costs.update.at(s);
            }
            [[fallthrough]];
          case Op::StashWeights:
          case Op::LoadWeights:
          case Op::DropWeights:
            try {
              versions[s].apply(instruction);
            } catch (const std::logic_error& e) {
              throw ScheduleError(describe(s, instruction) + ": " + e.what());
            }
            result.peak_weight_versions[s] = std::max(result.peak_weight_versions[s], versions[s].versions_held());
            break;
        }
        if (!ran) break;  // blocked on a receive; try the other stages
        clock[s] = end;
        result.timeline.push_back({s, instruction, start, end});
        ++next[s];
        progress = true;
      }
    }
  }
  std::string blocked;
  for (int s = 0; s < stages; ++s)
    if (!done(s)) blocked += (blocked.empty() ? "" : "; ") + describe(s, schedule.programs[s][next[s]]);
  if (!blocked.empty())
    throw ScheduleError("deadlock: every unfinished stage waits on a message that is never sent (" + blocked + ")");

  result.makespan = *std::max_element(clock.begin(), clock.end());
  double total_busy = 0.0;
  for (double b : busy) total_busy += b;
  result.bubble_fraction = result.makespan > 0 ? 1.0 - total_busy / (stages * result.makespan) : 0.0;
  return result;
}

}  // namespace minipipe::pipeline
