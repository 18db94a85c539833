#include "pipeline/simulator.h"

#include <algorithm>
#include <deque>
#include <map>
#include <tuple>
#include <string>

#include "pipeline/weight_versions.h"

namespace minipipe::pipeline {

CostModel CostModel::uniform(int stages, double forward_cost, double backward_cost) {
  return {std::vector<double>(stages, forward_cost), std::vector<double>(stages, backward_cost), 0.0, {}, {}, {}};
}

double CostModel::compute_cost(int stage, const Instruction& instruction) const {
  const bool forward_op = instruction.op == Op::Forward;
  if (instruction.op == Op::BackwardInput || instruction.op == Op::BackwardWeight) {
    const double weight = backward_weight.empty() ? backward[stage] / 2 : backward_weight.at(stage);
    return instruction.op == Op::BackwardWeight ? weight : backward[stage] - weight;
  }
  const auto& per_slice = forward_op ? slice_forward : slice_backward;
  if (!per_slice.empty()) return per_slice.at(stage).at(instruction.slice);
  return forward_op ? forward[stage] : backward[stage];
}

double theoretical_bubble_fraction(int stages, int micro_batches, int virtual_stages) {
  return static_cast<double>(stages - 1) / static_cast<double>(virtual_stages * micro_batches + stages - 1);
}

namespace {

struct Message {
  int micro_batch, slice, chunk;  // chunk: the receiver's
  double arrival;
};

std::string describe(const Schedule& schedule, int worker, const Instruction& instruction) {
  return schedule.worker_name(worker) + " " + op_name(instruction.op) +
         (instruction.micro_batch >= 0 ? "(micro-batch " + std::to_string(instruction.micro_batch) +
                                             (instruction.slice > 0 ? ", slice " + std::to_string(instruction.slice) : "") + ")"
                                       : "") +
         (instruction.version >= 0 ? "[version " + std::to_string(instruction.version) + "]" : "");
}

// The AllReduces of one replicated stage: when each replica reached its k-th (-1: not yet).
struct AllReduceRounds {
  std::vector<std::vector<double>> arrival;  // [round][replica]
  double arrive(int round, int replica, int replicas, double clock) {  // the latest arrival, or -1 while one is missing
    if (static_cast<int>(arrival.size()) <= round) arrival.resize(round + 1, std::vector<double>(replicas, -1.0));
    std::vector<double>& r = arrival[round];
    if (r[replica] < 0) r[replica] = clock;
    return std::find(r.begin(), r.end(), -1.0) != r.end() ? -1.0 : *std::max_element(r.begin(), r.end());
  }
};

}  // namespace

SimulationResult simulate(const Schedule& schedule, const CostModel& costs) {
  const int stages = schedule.stages, workers = schedule.workers();
  if (static_cast<int>(costs.forward.size()) != stages || static_cast<int>(costs.backward.size()) != stages)
    throw ScheduleError("simulate: the schedule and its cost model must both have " + std::to_string(stages) + " stages");
  for (const auto* per_slice : {&costs.slice_forward, &costs.slice_backward})
    if (!per_slice->empty() && (static_cast<int>(per_slice->size()) != stages ||
                                std::any_of(per_slice->begin(), per_slice->end(), [&](const std::vector<double>& row) {
                                  return static_cast<int>(row.size()) != schedule.token_slices;
                                })))
      throw ScheduleError("simulate: per-slice costs must be given for " + std::to_string(stages) + " stages x " +
                          std::to_string(schedule.token_slices) + " token slices");
  // Activations flow from a worker of stage s to the worker of stage s + 1 that runs the
  // micro-batch, gradients back: one first-in first-out channel per (kind, sender, receiver).
  std::map<std::tuple<bool, int, int>, std::deque<Message>> channels;
  auto channel = [&](bool gradient, int from, int to) -> std::deque<Message>& { return channels[{gradient, from, to}]; };
  std::vector<AllReduceRounds> all_reduces(stages);
  std::vector<int> all_reduces_done(workers, 0);
  std::vector<size_t> next(workers, 0);
  std::vector<double> clock(workers, 0.0), busy(workers, 0.0);
  std::vector<int> in_flight(workers, 0);
  std::vector<WeightVersionState> versions(workers);
  SimulationResult result;
  result.peak_in_flight.assign(workers, 0);
  result.peak_weight_versions.assign(workers, 1);

  auto done = [&](int w) { return next[w] >= schedule.programs[w].size(); };
  bool progress = true;
  while (progress) {
    progress = false;
    for (int w = 0; w < workers; ++w) {
      const int s = schedule.stage_of(w);
      while (!done(w)) {
        const Instruction& instruction = schedule.programs[w][next[w]];
        const int m = instruction.micro_batch;
        double start = clock[w], end = clock[w];
        auto receive = [&](std::deque<Message>& from, const char* what) {
          if (from.empty()) return false;
          const Message& next_message = from.front();
          if (next_message.micro_batch != m || next_message.slice != instruction.slice || next_message.chunk != instruction.chunk)
            throw ScheduleError(describe(schedule, w, instruction) + " waits for the " + what + " of micro-batch " +
                                unit_label(instruction, schedule) + ", but the next one its neighbour sends is micro-batch " +
                                unit_label({instruction.op, next_message.micro_batch, -1, next_message.slice, next_message.chunk},
                                           schedule) +
                                ": sends and receives are in different orders, which deadlocks");
          start = end = std::max(clock[w], from.front().arrival);
          from.pop_front();
          return true;
        };
        // The neighbouring piece of the model (the next or previous stage, or under
        // interleaving another chunk), checked to exist, and the worker that runs it for m.
        const int piece = schedule.piece_of(s, instruction.chunk);
        auto neighbour = [&](bool next_piece) {
          const int other = next_piece ? piece + 1 : piece - 1;
          if (other < 0 || other >= schedule.pieces())
            throw ScheduleError(describe(schedule, w, instruction) +
                                (next_piece ? ": the last stage has no next stage" : ": the first stage has no previous stage"));
          return std::pair{schedule.worker_of_piece(other, m), schedule.chunk_of_piece(other)};
        };
        bool ran = true;
        switch (instruction.op) {
          case Op::Forward:
          case Op::Backward:
          case Op::BackwardInput:
          case Op::BackwardWeight: {
            const double cost = costs.compute_cost(s, instruction);
            end = start + cost;
            busy[w] += cost;
            if (instruction.op == Op::Forward)
              result.peak_in_flight[w] = std::max(result.peak_in_flight[w], ++in_flight[w]);
            else if (is_backward(instruction.op))
              --in_flight[w];
            break;
          }
          case Op::SendActivation:
          case Op::SendGradient: {
            const bool gradient = instruction.op == Op::SendGradient;
            const auto [to, chunk] = neighbour(!gradient);
            channel(gradient, w, to).push_back({m, instruction.slice, chunk, clock[w] + costs.communication});
            break;
          }
          case Op::ReceiveActivation:
          case Op::ReceiveGradient: {
            const bool gradient = instruction.op == Op::ReceiveGradient;
            ran = receive(channel(gradient, neighbour(gradient).first, w), gradient ? "gradient" : "activation");
            break;
          }
          case Op::AllReduce: {
            const double all_arrived =
                all_reduces[s].arrive(all_reduces_done[w], schedule.replica_of(w), schedule.replicas_of(s), clock[w]);
            ran = all_arrived >= 0;
            if (!ran) break;
            start = all_arrived;
            end = start + (costs.all_reduce.empty() ? 0.0 : costs.all_reduce.at(s));
            ++all_reduces_done[w];
            break;
          }
          case Op::OptimizerStep:
            if (!costs.update.empty()) {
              end = start + costs.update.at(s);
              busy[w] += costs.update.at(s);
            }
            [[fallthrough]];
          case Op::StashWeights:
          case Op::LoadWeights:
          case Op::DropWeights:
            try {
              versions[w].apply(instruction);
            } catch (const std::logic_error& e) {
              throw ScheduleError(describe(schedule, w, instruction) + ": " + e.what());
            }
            result.peak_weight_versions[w] = std::max(result.peak_weight_versions[w], versions[w].versions_held());
            break;
        }
        if (!ran) break;  // blocked on a receive or an AllReduce; try the other workers
        clock[w] = end;
        result.timeline.push_back({w, instruction, start, end});
        ++next[w];
        progress = true;
      }
    }
  }
  std::string blocked;
  for (int w = 0; w < workers; ++w)
    if (!done(w)) blocked += (blocked.empty() ? "" : "; ") + describe(schedule, w, schedule.programs[w][next[w]]);
  if (!blocked.empty())
    throw ScheduleError("deadlock: every unfinished worker waits on a message that is never sent or an AllReduce that a "
                        "replica never reaches (" + blocked + ")");

  result.makespan = *std::max_element(clock.begin(), clock.end());
  double total_busy = 0.0;
  for (double b : busy) total_busy += b;
  result.bubble_fraction = result.makespan > 0 ? 1.0 - total_busy / (workers * result.makespan) : 0.0;
  return result;
}

}  // namespace minipipe::pipeline
