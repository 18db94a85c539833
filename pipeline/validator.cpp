#include "pipeline/validator.h"

#include <map>
#include <sstream>

namespace minipipe::pipeline {

ValidationReport validate(const Schedule& schedule) {
  std::vector<std::string> problems;
  auto problem = [&](int stage, const std::string& text) {
    problems.push_back("stage " + std::to_string(stage) + ": " + text);
  };
  const int stages = schedule.stages, last = stages - 1, micro_batches = schedule.micro_batches;
  if (static_cast<int>(schedule.programs.size()) != stages)
    throw ScheduleError("schedule '" + schedule.name + "' has " + std::to_string(schedule.programs.size()) +
                        " programs for " + std::to_string(stages) + " stages");
  for (int s = 0; s < stages; ++s) {
    const Program& program = schedule.programs[s];
    std::map<std::pair<Op, int>, std::vector<size_t>> where;  // (op, micro-batch) -> positions
    for (size_t i = 0; i < program.size(); ++i) {
      const Instruction& instruction = program[i];
      if (instruction.op != Op::OptimizerStep && (instruction.micro_batch < 0 || instruction.micro_batch >= micro_batches))
        problem(s, std::string(op_name(instruction.op)) + " names micro-batch " + std::to_string(instruction.micro_batch) +
                       " outside 0.." + std::to_string(micro_batches - 1));
      where[{instruction.op, instruction.micro_batch}].push_back(i);
    }
    auto count = [&](Op op, int m) { return where.count({op, m}) ? where[{op, m}].size() : size_t{0}; };
    auto position = [&](Op op, int m) { return where[{op, m}].front(); };
    for (int m = 0; m < micro_batches; ++m) {
      const std::string mb = " of micro-batch " + std::to_string(m);
      if (count(Op::Forward, m) != 1 || count(Op::Backward, m) != 1) {
        problem(s, "runs the forward" + mb + " " + std::to_string(count(Op::Forward, m)) + " times and its backward " +
                       std::to_string(count(Op::Backward, m)) + " times (each must run once)");
        continue;
      }
      const size_t forward = position(Op::Forward, m), backward = position(Op::Backward, m);
      if (backward < forward) problem(s, "runs the backward" + mb + " before its forward");
      // Each communication instruction must be there exactly when the stage has that
      // neighbour, and on the right side of the compute it feeds or drains.
      struct Expectation {
        Op op;
        bool needed;
        bool before;     // must come before (true) or after (false) the compute
        size_t compute;  // position of that compute
      };
      for (const Expectation& e : {Expectation{Op::ReceiveActivation, s > 0, true, forward},
                                   Expectation{Op::SendActivation, s < last, false, forward},
                                   Expectation{Op::ReceiveGradient, s < last, true, backward},
                                   Expectation{Op::SendGradient, s > 0, false, backward}}) {
        const size_t n = count(e.op, m);
        if (n != (e.needed ? 1u : 0u)) {
          problem(s, std::string("has ") + std::to_string(n) + " " + op_name(e.op) + mb + ", needs " + (e.needed ? "1" : "none") +
                         (e.needed ? "" : (s == 0 ? " (the first stage has no previous stage)" : " (the last stage has no next stage)")));
        } else if (e.needed && (position(e.op, m) < e.compute) != e.before) {
          problem(s, std::string(op_name(e.op)) + mb + " must come " + (e.before ? "before" : "after") + " the " +
                         (e.op == Op::ReceiveActivation || e.op == Op::SendActivation ? "forward" : "backward"));
        }
      }
    }
    if (count(Op::OptimizerStep, -1) != 1 || program.empty() || program.back().op != Op::OptimizerStep)
      problem(s, "must end with exactly one OptimizerStep");
  }
  if (!problems.empty()) {
    std::string text = "schedule '" + schedule.name + "' is invalid:";
    for (const std::string& p : problems) text += "\n  " + p;
    throw ScheduleError(text);
  }
  const SimulationResult simulated = simulate(schedule, CostModel::uniform(stages, 1.0, 1.0));  // throws on deadlock
  return {simulated.peak_in_flight};
}

std::string format_grid(const Schedule& schedule) {
  const SimulationResult simulated = simulate(schedule, CostModel::uniform(schedule.stages, 1.0, 1.0));
  const int slots = static_cast<int>(simulated.makespan + 0.5);
  const int width = static_cast<int>(std::to_string(schedule.micro_batches - 1).size()) + 2;
  std::vector<std::vector<std::string>> cells(schedule.stages, std::vector<std::string>(slots, "."));
  for (const TimedInstruction& t : simulated.timeline) {
    if (t.instruction.op != Op::Forward && t.instruction.op != Op::Backward) continue;
    cells[t.stage][static_cast<int>(t.start + 0.5)] =
        (t.instruction.op == Op::Forward ? "F" : "B") + std::to_string(t.instruction.micro_batch);
  }
  std::ostringstream out;
  out << schedule.name << ", " << schedule.stages << " stages, " << schedule.micro_batches
      << " micro-batches (unit forward and backward costs)\n";
  for (int s = 0; s < schedule.stages; ++s) {
    std::string row = "stage " + std::to_string(s) + " |";
    for (const std::string& cell : cells[s]) row += ' ' + cell + std::string(width - 1 - cell.size(), ' ');
    out << row.substr(0, row.find_last_not_of(' ') + 1) << '\n';
  }
  return out.str();
}

}  // namespace minipipe::pipeline
