#include "pipeline/validator.h"

#include <algorithm>
#include <functional>
#include <map>
#include <sstream>
#include <tuple>

#include "pipeline/weight_versions.h"

namespace minipipe::pipeline {

namespace {

bool is_weight_instruction(Op op) { return op == Op::StashWeights || op == Op::LoadWeights || op == Op::DropWeights; }

// An asynchronous worker updates after the backward of each of its micro-batches that
// completes an update's group (a replica of a replicated stage all-reduces just before), runs
// its weight instructions without breaking WeightVersionState's rules, ends with its latest
// weights and no stashed copy, and keeps its policy's promise.
void check_weight_versions(const Schedule& schedule, int worker, const std::function<void(const std::string&)>& problem) {
  const Program& program = schedule.programs[worker];
  const int per_update = schedule.micro_batches_per_update, stage = schedule.stage_of(worker);
  const bool replicated = schedule.replicas_of(stage) > 1;
  std::map<int, size_t> backward_at, update_at;
  std::map<int, int> forward_version;
  WeightVersionState state;
  for (size_t i = 0; i < program.size(); ++i) {
    const Instruction& instruction = program[i];
    const int m = instruction.micro_batch;
    try {
      state.apply(instruction);
    } catch (const std::logic_error& e) {
      problem("instruction " + std::to_string(i) + ": " + e.what());
      return;  // the rest would only repeat it
    }
    const std::string mb = " of micro-batch " + std::to_string(m);
    if (instruction.op == Op::Backward) backward_at[m] = i;
    if (instruction.op == Op::OptimizerStep) update_at[m] = i;
    if (instruction.op == Op::AllReduce && !replicated) problem("all-reduces" + mb + ", but its stage has one replica");
    if (instruction.op == Op::OptimizerStep && replicated &&
        (i == 0 || program[i - 1].op != Op::AllReduce || program[i - 1].micro_batch != m))
      problem("updates after micro-batch " + std::to_string(m) + " without an AllReduce of it just before: the replicas' "
              "weights would drift apart");
    if (instruction.op == Op::Forward) {
      forward_version[m] = instruction.version;
      if (schedule.weights != WeightPolicy::VerticalSync && instruction.version != state.latest())
        problem("the forward" + mb + " runs with version " + std::to_string(instruction.version) + ", not the latest (" +
                std::to_string(state.latest()) + ")");
    }
    if (instruction.op == Op::Backward) {
      const bool latest = schedule.weights == WeightPolicy::None;
      const int promised = latest ? state.latest() : forward_version.count(m) ? forward_version[m] : -1;
      if (instruction.version != promised)
        problem("the backward" + mb + " runs with version " + std::to_string(instruction.version) + "; " +
                weight_policy_name(schedule.weights) + " promises " + std::to_string(promised) +
                (latest ? " (the latest)" : " (its forward's)"));
    }
  }
  for (int m = 0; m < schedule.micro_batches; ++m) {
    if (schedule.worker_for(stage, m) != worker) continue;
    const bool updates = (m + 1) % per_update == 0;
    if (updates != static_cast<bool>(update_at.count(m)))
      problem(std::string(updates ? "needs" : "must not have") + " an OptimizerStep after the backward of micro-batch " +
              std::to_string(m) + " (one update per " + std::to_string(per_update) + " micro-batches)");
    else if (updates && backward_at.count(m) && update_at[m] < backward_at[m])
      problem("updates for micro-batch " + std::to_string(m) + " before its backward");
  }
  if (state.live() != state.latest() || !state.stashed().empty())
    problem("ends holding weight version " + std::to_string(state.live()) + " (the latest is " +
            std::to_string(state.latest()) + ") and " + std::to_string(state.stashed().size()) + " stashed copies");
}

// Under vertical sync every stage runs a micro-batch with the version the input stage used.
void check_vertical_sync(const Schedule& schedule, const std::function<void(int, const std::string&)>& problem) {
  std::map<int, int> input_stage_version;
  for (int w = 0; w < schedule.workers(); ++w)
    for (const Instruction& i : schedule.programs[w])
      if (i.op == Op::Forward && schedule.stage_of(w) == 0) input_stage_version[i.micro_batch] = i.version;
  for (int w = 0; w < schedule.workers(); ++w)
    for (const Instruction& i : schedule.programs[w])
      if (i.op == Op::Forward && input_stage_version.count(i.micro_batch) && i.version != input_stage_version[i.micro_batch])
        problem(w, "vertical sync: the forward of micro-batch " + std::to_string(i.micro_batch) + " runs with version " +
                       std::to_string(i.version) + ", the input stage used " +
                       std::to_string(input_stage_version[i.micro_batch]));
}

// The schedule's shape: replica counts, programs per worker, and which features combine.
void check_shape(const Schedule& schedule) {
  const int stages = schedule.stages, chunks = schedule.virtual_stages, slices = schedule.token_slices;
  if (!schedule.replicas.empty() &&
      (static_cast<int>(schedule.replicas.size()) != stages ||
       std::any_of(schedule.replicas.begin(), schedule.replicas.end(), [](int r) { return r < 1; })))
    throw ScheduleError("schedule '" + schedule.name + "' needs one replica count of at least 1 per stage");
  int workers = 0;
  for (int s = 0; s < stages; ++s) workers += schedule.replicas_of(s);
  if (static_cast<int>(schedule.programs.size()) != workers)
    throw ScheduleError("schedule '" + schedule.name + "' has " + std::to_string(schedule.programs.size()) +
                        " programs for " + std::to_string(workers) + " workers (" + std::to_string(stages) + " stages)");
  if (schedule.replicated() && !schedule.asynchronous())
    throw ScheduleError("schedule '" + schedule.name + "' replicates stages, which only the asynchronous schedule does");
  if (slices < 1) throw ScheduleError("schedule '" + schedule.name + "' has " + std::to_string(slices) + " token slices");
  if (slices > 1 && schedule.asynchronous())
    throw ScheduleError("schedule '" + schedule.name + "' is asynchronous and token-sliced, which minipipe does not combine");
  if (chunks < 1) throw ScheduleError("schedule '" + schedule.name + "' has " + std::to_string(chunks) + " virtual stages");
  if (chunks > 1 && (slices > 1 || schedule.asynchronous()))
    throw ScheduleError("schedule '" + schedule.name + "' has virtual stages and is " +
                        (slices > 1 ? "token-sliced" : "asynchronous") + ", which minipipe does not combine");
  for (const Program& program : schedule.programs)
    for (const Instruction& i : program)
      if ((i.op == Op::BackwardInput || i.op == Op::BackwardWeight) && (slices > 1 || schedule.asynchronous()))
        throw ScheduleError("schedule '" + schedule.name + "' splits backwards into B and W and is " +
                            (slices > 1 ? "token-sliced" : "asynchronous") + ", which minipipe does not combine");
  // An overlapped pair (DualPipe's F&B) is a Forward and the next compute, a backward.
  for (int w = 0; w < workers; ++w) {
    const Program& program = schedule.programs[w];
    for (size_t at = 0; at < program.size(); ++at) {
      if (!program[at].overlapped) continue;
      size_t next = at + 1;
      while (next < program.size() && !is_compute(program[next].op)) ++next;
      if (program[at].op != Op::Forward || next == program.size() || !is_backward(program[next].op))
        throw ScheduleError("schedule '" + schedule.name + "', " + schedule.worker_name(w) + ": instruction " +
                            std::to_string(at) + " is marked overlapped, but only a forward followed by a backward "
                            "overlap (DualPipe's F&B)");
    }
  }
}

using Problem = std::function<void(const std::string&)>;

// Where each (op, micro-batch, slice, chunk) stands in one program; checks on the way that
// every instruction names a micro-batch, slice and chunk that exist.
class Positions {
 public:
  Positions(const Schedule& schedule, const Program& program, const Problem& problem) {
    const int micro_batches = schedule.micro_batches, slices = schedule.token_slices, chunks = schedule.virtual_stages;
    for (size_t i = 0; i < program.size(); ++i) {
      const Instruction& instruction = program[i];
      const bool names_micro_batch =
          !is_weight_instruction(instruction.op) && (instruction.op != Op::OptimizerStep || schedule.asynchronous());
      if (names_micro_batch && (instruction.micro_batch < 0 || instruction.micro_batch >= micro_batches))
        problem(std::string(op_name(instruction.op)) + " names micro-batch " + std::to_string(instruction.micro_batch) +
                " outside 0.." + std::to_string(micro_batches - 1));
      if (instruction.slice < 0 || instruction.slice >= slices)
        problem(std::string(op_name(instruction.op)) + " names token slice " + std::to_string(instruction.slice) +
                " outside 0.." + std::to_string(slices - 1));
      if (instruction.chunk < 0 || instruction.chunk >= chunks)
        problem(std::string(op_name(instruction.op)) + " names chunk " + std::to_string(instruction.chunk) + " outside 0.." +
                std::to_string(chunks - 1));
      where_[{instruction.op, instruction.micro_batch, instruction.slice, instruction.chunk}].push_back(i);
    }
  }
  size_t count(Op op, int m, int slice = 0, int chunk = 0) const {
    const auto it = where_.find({op, m, slice, chunk});
    return it == where_.end() ? 0 : it->second.size();
  }
  size_t first(Op op, int m, int slice = 0, int chunk = 0) const { return where_.at({op, m, slice, chunk}).front(); }

 private:
  std::map<std::tuple<Op, int, int, int>, std::vector<size_t>> where_;
};

// One unit (micro-batch m, slice, chunk) on its worker: its forward once, its backward once
// (whole, or B then W) and after it, slices in order, and each message present exactly when the
// piece has that neighbour, on the right side of the compute it feeds or drains.
void check_unit(const Schedule& schedule, int stage, int m, int slice, int chunk, const Positions& at, const Problem& problem) {
  const int piece = schedule.piece_of(stage, chunk), last = schedule.pieces() - 1, slices = schedule.token_slices;
  const std::string mb = " of micro-batch " + unit_label({Op::Forward, m, -1, slice, chunk}, schedule);
  const size_t fused = at.count(Op::Backward, m, slice, chunk), b = at.count(Op::BackwardInput, m, slice, chunk),
               w_count = at.count(Op::BackwardWeight, m, slice, chunk);
  const bool split = b + w_count > 0;
  if (at.count(Op::Forward, m, slice, chunk) != 1 || (split ? b != 1 || w_count != 1 || fused != 0 : fused != 1)) {
    problem("runs the forward" + mb + " " + std::to_string(at.count(Op::Forward, m, slice, chunk)) + " times and its backward " +
            std::to_string(fused) + " times, B " + std::to_string(b) + " times and W " + std::to_string(w_count) +
            " times (the forward once, and the backward once, whole or as one B and one W)");
    return;
  }
  const size_t forward = at.first(Op::Forward, m, slice, chunk),
               backward = at.first(split ? Op::BackwardInput : Op::Backward, m, slice, chunk);
  if (backward < forward) problem("runs the backward" + mb + " before its forward");
  if (split && at.first(Op::BackwardWeight, m, slice, chunk) < backward)
    problem("runs the W" + mb + " before its B (W uses what B leaves)");
  // A slice attends over the keys and values of the earlier slices, so it runs after them;
  // its backward hands them their gradients, so theirs run after it.
  if (slice > 0 && at.count(Op::Forward, m, slice - 1) == 1 && at.first(Op::Forward, m, slice - 1) > forward)
    problem("runs the forward" + mb + " before that of the slice before it");
  if (slice + 1 < slices && at.count(Op::Backward, m, slice + 1) == 1 && at.first(Op::Backward, m, slice + 1) > backward)
    problem("runs the backward" + mb + " before that of the slice after it");
  struct Expectation {
    Op op;
    bool needed;
    bool before;     // must come before (true) or after (false) the compute
    size_t compute;  // position of that compute
  };
  for (const Expectation& e : {Expectation{Op::ReceiveActivation, piece > 0, true, forward},
                               Expectation{Op::SendActivation, piece < last, false, forward},
                               Expectation{Op::ReceiveGradient, piece < last, true, backward},
                               Expectation{Op::SendGradient, piece > 0, false, backward}}) {
    const size_t n = at.count(e.op, m, slice, chunk);
    if (n != (e.needed ? 1u : 0u)) {
      problem(std::string("has ") + std::to_string(n) + " " + op_name(e.op) + mb + ", needs " + (e.needed ? "1" : "none") +
              (e.needed ? "" : (piece == 0 ? " (the first stage has no previous stage)" : " (the last stage has no next stage)")));
    } else if (e.needed && (at.first(e.op, m, slice, chunk) < e.compute) != e.before) {
      problem(std::string(op_name(e.op)) + mb + " must come " + (e.before ? "before" : "after") + " the " +
              (e.op == Op::ReceiveActivation || e.op == Op::SendActivation ? "forward" : "backward"));
    }
  }
}

// Worker w's program: every unit of its micro-batches once and in order, none of another
// replica's, and its updates where the schedule's kind needs them.
void check_program(const Schedule& schedule, int w, const Problem& problem) {
  const int s = schedule.stage_of(w);
  const Program& program = schedule.programs[w];
  const Positions at(schedule, program, problem);
  for (int m = 0; m < schedule.micro_batches; ++m) {
    const int runner = schedule.worker_for(s, m);
    if (runner != w) {  // another replica's micro-batch
      if (at.count(Op::Forward, m) + at.count(Op::Backward, m) > 0)
        problem("runs micro-batch " + std::to_string(m) + ", which belongs to " + schedule.worker_name(runner));
      continue;
    }
    for (int unit = 0; unit < schedule.token_slices * schedule.virtual_stages; ++unit)  // slices and chunks do not combine
      check_unit(schedule, s, m, unit % schedule.token_slices, unit / schedule.token_slices, at, problem);
  }
  if (schedule.asynchronous())
    check_weight_versions(schedule, w, problem);
  else if (at.count(Op::OptimizerStep, -1) != 1 || program.empty() || program.back().op != Op::OptimizerStep)
    problem("must end with exactly one OptimizerStep");
}

}  // namespace

ValidationReport validate(const Schedule& schedule) {
  check_shape(schedule);
  std::vector<std::string> problems;
  auto problem = [&](int worker, const std::string& text) { problems.push_back(schedule.worker_name(worker) + ": " + text); };
  for (int w = 0; w < schedule.workers(); ++w)
    check_program(schedule, w, [&](const std::string& text) { problem(w, text); });
  if (schedule.asynchronous() && schedule.weights == WeightPolicy::VerticalSync) check_vertical_sync(schedule, problem);
  if (!problems.empty()) {
    std::string text = "schedule '" + schedule.name + "' is invalid:";
    for (const std::string& p : problems) text += "\n  " + p;
    throw ScheduleError(text);
  }
  const SimulationResult simulated = simulate(schedule, CostModel::uniform(schedule.stages, 1.0, 1.0));  // throws on deadlock
  return {simulated.peak_in_flight};
}

std::string format_grid(const Schedule& schedule) {
  // One step per compute instruction: a split backward's B and W take one each.
  bool split = false;
  for (const Program& program : schedule.programs)
    for (const Instruction& i : program) split = split || i.op == Op::BackwardWeight;
  const SimulationResult simulated = simulate(schedule, CostModel::uniform(schedule.stages, 1.0, split ? 2.0 : 1.0));
  const int slots = static_cast<int>(simulated.makespan + 0.5);
  // Asynchronous schedules add each compute's weight version in brackets and a U on the
  // backward an update follows: F3[1], B1[0]U.
  std::vector<std::vector<std::string>> cells(schedule.workers(), std::vector<std::string>(slots, "."));
  std::vector<std::string*> last_compute(schedule.workers(), nullptr);
  size_t width = 2;
  for (const TimedInstruction& t : simulated.timeline) {
    const Instruction& i = t.instruction;
    if (i.op == Op::OptimizerStep && last_compute[t.worker] && schedule.asynchronous()) *last_compute[t.worker] += "U";
    if (!is_compute(i.op)) continue;
    std::string& cell = cells[t.worker][static_cast<int>(t.start + 0.5)];
    cell = compute_letter(i.op) + unit_label(i, schedule) +
           (i.version >= 0 ? "[" + std::to_string(i.version) + "]" : "") + (i.overlapped ? "&" : "");
    last_compute[t.worker] = &cell;
    for (int slot = static_cast<int>(t.start + 0.5) + 1; slot < static_cast<int>(t.end + 0.5); ++slot)
      cells[t.worker][slot] = "~";  // a whole backward among split ones takes B's and W's slots
  }
  for (const auto& row : cells)
    for (const std::string& cell : row) width = std::max(width, cell.size() + 1);
  std::ostringstream out;
  out << schedule.name << ", " << schedule.stages << " stages, " << schedule.micro_batches << " micro-batches";
  if (schedule.replicated()) {
    out << ", replicas";
    for (int s = 0; s < schedule.stages; ++s) out << (s ? "," : " ") << schedule.replicas_of(s);
  }
  if (schedule.token_slices > 1) out << " x " << schedule.token_slices << " token slices (F<micro-batch>.<slice>)";
  if (schedule.virtual_stages > 1) out << ", " << schedule.virtual_stages << " chunks per stage (F<micro-batch>:<chunk>)";
  bool overlaps = false;
  for (const Program& program : schedule.programs)
    for (const Instruction& i : program) overlaps = overlaps || i.overlapped;
  if (overlaps) out << ", F&B: a forward overlapped with the backward after it";
  out << (split ? " (unit forward, B and W costs" : " (unit forward and backward costs");
  if (schedule.asynchronous())
    out << "; weights " << weight_policy_name(schedule.weights) << ", an update per " << schedule.micro_batches_per_update
        << " micro-batch" << (schedule.micro_batches_per_update > 1 ? "es" : "") << ", [version], U = update";
  out << ")\n";
  size_t name_width = 0;
  for (const std::string& name : schedule.worker_names()) name_width = std::max(name_width, name.size());
  for (int w = 0; w < schedule.workers(); ++w) {
    const std::string name = schedule.worker_name(w);
    std::string row = name + std::string(name_width - name.size(), ' ') + " |";
    for (const std::string& cell : cells[w]) row += ' ' + cell + std::string(width - 1 - cell.size(), ' ');
    out << row.substr(0, row.find_last_not_of(' ') + 1) << '\n';
  }
  return out.str();
}

}  // namespace minipipe::pipeline
