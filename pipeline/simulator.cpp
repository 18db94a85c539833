#include "pipeline/simulator.h"

#include <algorithm>
#include <deque>
#include <map>
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

void check_costs(const Schedule& schedule, const CostModel& costs) {
  const int stages = schedule.stages;
  if (static_cast<int>(costs.forward.size()) != stages || static_cast<int>(costs.backward.size()) != stages)
    throw ScheduleError("simulate: the schedule and its cost model must both have " + std::to_string(stages) + " stages");
  for (const auto* per_slice : {&costs.slice_forward, &costs.slice_backward})
    if (!per_slice->empty() && (static_cast<int>(per_slice->size()) != stages ||
                                std::any_of(per_slice->begin(), per_slice->end(), [&](const std::vector<double>& row) {
                                  return static_cast<int>(row.size()) != schedule.token_slices;
                                })))
      throw ScheduleError("simulate: per-slice costs must be given for " + std::to_string(stages) + " stages x " +
                          std::to_string(schedule.token_slices) + " token slices");
}

// One simulated run: every worker's clock, next instruction and what it holds.
class Simulation {
 public:
  Simulation(const Schedule& schedule, const CostModel& costs)
      : schedule_(schedule), costs_(costs), all_reduces_(schedule.stages), all_reduces_done_(schedule.workers(), 0),
        next_(schedule.workers(), 0), clock_(schedule.workers(), 0.0), busy_(schedule.workers(), 0.0),
        in_flight_(schedule.workers(), 0), versions_(schedule.workers()) {
    result_.peak_in_flight.assign(schedule.workers(), 0);
    result_.peak_weight_versions.assign(schedule.workers(), 1);
  }

  SimulationResult run() {
    // Each worker runs until it blocks on a receive or an AllReduce; round after round, until
    // no worker moves.
    for (bool moved = true; moved;) {
      moved = false;
      for (int w = 0; w < schedule_.workers(); ++w)
        while (!done(w) && step(w)) moved = true;
    }
    std::string blocked;
    for (int w = 0; w < schedule_.workers(); ++w)
      if (!done(w)) blocked += (blocked.empty() ? "" : "; ") + describe(schedule_, w, schedule_.programs[w][next_[w]]);
    if (!blocked.empty())
      throw ScheduleError("deadlock: every unfinished worker waits on a message that is never sent or an AllReduce that a "
                          "replica never reaches (" + blocked + ")");
    result_.makespan = *std::max_element(clock_.begin(), clock_.end());
    double total_busy = 0.0;
    for (double b : busy_) total_busy += b;
    result_.bubble_fraction = result_.makespan > 0 ? 1.0 - total_busy / (schedule_.workers() * result_.makespan) : 0.0;
    return std::move(result_);
  }

 private:
  bool done(int w) const { return next_[w] >= schedule_.programs[w].size(); }

  // Runs worker w's next instruction, or returns false when it must wait.
  bool step(int w) {
    const Instruction& instruction = schedule_.programs[w][next_[w]];
    const int s = schedule_.stage_of(w);
    double start = clock_[w], end = clock_[w];
    switch (instruction.op) {
      case Op::Forward:
      case Op::Backward:
      case Op::BackwardInput:
      case Op::BackwardWeight:
        end = start + costs_.compute_cost(s, instruction);
        busy_[w] += end - start;
        in_flight_[w] += in_flight_change(instruction.op);
        result_.peak_in_flight[w] = std::max(result_.peak_in_flight[w], in_flight_[w]);
        break;
      case Op::SendActivation:
      case Op::SendGradient: {
        const int chunk = schedule_.neighbour(w, instruction, instruction.op == Op::SendActivation).chunk;
        channels_[schedule_.channel_of(w, instruction)].push_back(
            {instruction.micro_batch, instruction.slice, chunk, clock_[w] + costs_.communication});
        break;
      }
      case Op::ReceiveActivation:
      case Op::ReceiveGradient:
        if (!receive(w, instruction, start)) return false;
        end = start;
        break;
      case Op::AllReduce: {
        const double all_arrived =
            all_reduces_[s].arrive(all_reduces_done_[w], schedule_.replica_of(w), schedule_.replicas_of(s), clock_[w]);
        if (all_arrived < 0) return false;
        start = all_arrived;
        end = start + (costs_.all_reduce.empty() ? 0.0 : costs_.all_reduce.at(s));
        ++all_reduces_done_[w];
        break;
      }
      case Op::OptimizerStep:
        if (!costs_.update.empty()) {
          end = start + costs_.update.at(s);
          busy_[w] += costs_.update.at(s);
        }
        [[fallthrough]];
      case Op::StashWeights:
      case Op::LoadWeights:
      case Op::DropWeights:
        apply_weight_instruction(w, instruction);
        break;
    }
    clock_[w] = end;
    result_.timeline.push_back({w, instruction, start, end});
    ++next_[w];
    return true;
  }

  // Takes the message a receive waits for (false while none has arrived); `start` becomes
  // when it arrived, if later.
  bool receive(int w, const Instruction& instruction, double& start) {
    std::deque<Message>& from = channels_[schedule_.channel_of(w, instruction)];
    if (from.empty()) return false;
    const Message& message = from.front();
    if (message.micro_batch != instruction.micro_batch || message.slice != instruction.slice || message.chunk != instruction.chunk)
      throw ScheduleError(describe(schedule_, w, instruction) + " waits for the " +
                          (instruction.op == Op::ReceiveGradient ? "gradient" : "activation") + " of micro-batch " +
                          unit_label(instruction, schedule_) + ", but the next one its neighbour sends is micro-batch " +
                          unit_label({instruction.op, message.micro_batch, -1, message.slice, message.chunk}, schedule_) +
                          ": sends and receives are in different orders, which deadlocks");
    start = std::max(clock_[w], message.arrival);
    from.pop_front();
    return true;
  }

  void apply_weight_instruction(int w, const Instruction& instruction) {
    try {
      versions_[w].apply(instruction);
    } catch (const std::logic_error& e) {
      throw ScheduleError(describe(schedule_, w, instruction) + ": " + e.what());
    }
    result_.peak_weight_versions[w] = std::max(result_.peak_weight_versions[w], versions_[w].versions_held());
  }

  const Schedule& schedule_;
  const CostModel& costs_;
  std::map<Schedule::ChannelKey, std::deque<Message>> channels_;
  std::vector<AllReduceRounds> all_reduces_;  // per stage
  std::vector<int> all_reduces_done_;         // per worker, from here on
  std::vector<size_t> next_;
  std::vector<double> clock_, busy_;
  std::vector<int> in_flight_;
  std::vector<WeightVersionState> versions_;
  SimulationResult result_;
};

}  // namespace

SimulationResult simulate(const Schedule& schedule, const CostModel& costs) {
  check_costs(schedule, costs);
  return Simulation(schedule, costs).run();
}
}  // namespace minipipe::pipeline
