#include "pipeline/schedule.h"

#include <algorithm>
#include <set>
#include <stdexcept>

#include "pipeline/schedule_spec.h"

namespace minipipe::pipeline {

const char* op_name(Op op) {
  switch (op) {
    case Op::Forward: return "Forward";
    case Op::Backward: return "Backward";
    case Op::BackwardInput: return "BackwardInput";
    case Op::BackwardWeight: return "BackwardWeight";
    case Op::SendActivation: return "SendActivation";
    case Op::ReceiveActivation: return "ReceiveActivation";
    case Op::SendGradient: return "SendGradient";
    case Op::ReceiveGradient: return "ReceiveGradient";
    case Op::OptimizerStep: return "OptimizerStep";
    case Op::StashWeights: return "StashWeights";
    case Op::LoadWeights: return "LoadWeights";
    case Op::DropWeights: return "DropWeights";
    case Op::AllReduce: return "AllReduce";
  }
  return "?";
}

bool is_compute(Op op) {
  return op == Op::Forward || op == Op::Backward || op == Op::BackwardInput || op == Op::BackwardWeight;
}

bool is_backward(Op op) { return op == Op::Backward || op == Op::BackwardInput; }

bool is_message(Op op) {
  return op == Op::SendActivation || op == Op::ReceiveActivation || op == Op::SendGradient || op == Op::ReceiveGradient;
}

int in_flight_change(Op op) { return op == Op::Forward ? 1 : is_backward(op) ? -1 : 0; }

const char* compute_letter(Op op) { return op == Op::Forward ? "F" : op == Op::BackwardWeight ? "W" : "B"; }

const char* placement_name(Placement placement) { return placement == Placement::V ? "v" : "looped"; }

WeightPolicy parse_weight_policy(const std::string& name) {
  if (name == "stash") return WeightPolicy::Stash;
  if (name == "vertical-sync") return WeightPolicy::VerticalSync;
  if (name == "none") return WeightPolicy::None;
  if (name == "2bw") return WeightPolicy::TwoBuffered;
  throw std::invalid_argument("unknown weight policy '" + name + "': use stash, vertical-sync, none or 2bw");
}

const char* weight_policy_name(WeightPolicy policy) {
  switch (policy) {
    case WeightPolicy::Stash: return "stash";
    case WeightPolicy::VerticalSync: return "vertical-sync";
    case WeightPolicy::None: return "none";
    case WeightPolicy::TwoBuffered: return "2bw";
  }
  return "?";
}

bool Schedule::replicated() const {
  return std::any_of(replicas.begin(), replicas.end(), [](int r) { return r > 1; });
}

int Schedule::first_worker(int stage) const {
  if (replicas.empty()) return stage;
  int worker = 0;
  for (int s = 0; s < stage; ++s) worker += replicas.at(s);
  return worker;
}

int Schedule::stage_of(int worker) const {
  if (replicas.empty()) return worker;
  for (int s = 0; s < stages; ++s) {
    if (worker < replicas.at(s)) return s;
    worker -= replicas.at(s);
  }
  throw std::out_of_range("schedule '" + name + "' has no worker " + std::to_string(worker));
}

int Schedule::replica_for(int stage, int micro_batch) const {
  return (micro_batch / std::max(1, micro_batches_per_update)) % replicas_of(stage);
}

std::string Schedule::worker_name(int worker) const {
  const int stage = stage_of(worker);
  return "stage " + std::to_string(stage) +
         (replicas_of(stage) > 1 ? " replica " + std::to_string(replica_of(worker)) : std::string());
}

Schedule::Neighbour Schedule::neighbour(int worker, const Instruction& instruction, bool next) const {
  const int other = piece_of(stage_of(worker), instruction.chunk) + (next ? 1 : -1);
  if (other < 0 || other >= pieces())
    throw ScheduleError(describe(*this, worker, instruction) +
                        (next ? ": the last stage has no next stage" : ": the first stage has no previous stage"));
  return {other, stage_of_piece(other), chunk_of_piece(other), worker_of_piece(other, instruction.micro_batch)};
}

Schedule::ChannelKey Schedule::channel_of(int worker, const Instruction& instruction) const {
  if (!is_message(instruction.op))
    throw std::logic_error(std::string("channel_of: ") + op_name(instruction.op) + " sends and receives nothing");
  // Activations go to the next piece and come from the previous one; gradients the other way.
  const bool gradient = instruction.op == Op::SendGradient || instruction.op == Op::ReceiveGradient;
  const bool sends = instruction.op == Op::SendActivation || instruction.op == Op::SendGradient;
  const int other = neighbour(worker, instruction, sends != gradient).worker;
  return sends ? ChannelKey{gradient, worker, other} : ChannelKey{gradient, other, worker};
}

std::string instruction_text(const Instruction& instruction, const Schedule& schedule) {
  return std::string(op_name(instruction.op)) +
         (instruction.micro_batch >= 0 ? " of micro-batch " + unit_label(instruction, schedule) : std::string());
}

std::string describe(const Schedule& schedule, int worker, const Instruction& instruction) {
  return schedule.worker_name(worker) + " " + op_name(instruction.op) +
         (instruction.micro_batch >= 0 ? "(micro-batch " + std::to_string(instruction.micro_batch) +
                                             (instruction.slice > 0 ? ", slice " + std::to_string(instruction.slice) : "") + ")"
                                       : "") +
         (instruction.version >= 0 ? "[version " + std::to_string(instruction.version) + "]" : "");
}

std::vector<std::string> Schedule::worker_names() const {
  std::vector<std::string> names;
  for (int w = 0; w < workers(); ++w) names.push_back(worker_name(w));
  return names;
}

std::string unit_label(const Instruction& instruction, bool sliced, bool chunked) {
  return std::to_string(instruction.micro_batch) + (sliced ? "." + std::to_string(instruction.slice) : std::string()) +
         (chunked ? ":" + std::to_string(instruction.chunk) : std::string());
}

double messages_per_unit(const Schedule& schedule) {
  std::set<std::pair<int, int>> units;  // (micro-batch, slice) of every forward
  int64_t sends = 0;
  for (const Program& program : schedule.programs)
    for (const Instruction& i : program) {
      if (i.op == Op::Forward) units.insert({i.micro_batch, i.slice});
      sends += i.op == Op::SendActivation || i.op == Op::SendGradient;
    }
  return units.empty() ? 0.0 : static_cast<double>(sends) / static_cast<double>(units.size());
}

std::string unit_label(const Instruction& instruction, const Schedule& schedule) {
  return unit_label(instruction, schedule.token_slices > 1, schedule.virtual_stages > 1);
}

std::vector<Instruction> forward_units(int micro_batches, int token_slices) {
  std::vector<Instruction> units;
  for (int m = 0; m < micro_batches; ++m)
    for (int i = 0; i < token_slices; ++i) units.push_back({Op::Forward, m, -1, i});
  return units;
}

std::vector<Instruction> backward_units(int micro_batches, int token_slices) {
  std::vector<Instruction> units;
  for (int m = 0; m < micro_batches; ++m)
    for (int i = token_slices - 1; i >= 0; --i) units.push_back({Op::Backward, m, -1, i});
  return units;
}

namespace {
void check_sizes(const char* name, int stages, int micro_batches, int token_slices = 1) {
  if (stages < 1 || micro_batches < 1)
    throw std::invalid_argument(std::string(name) + ": need at least 1 stage and 1 micro-batch, got " +
                                std::to_string(stages) + " stages and " + std::to_string(micro_batches) + " micro-batches");
  if (token_slices < 1)
    throw std::invalid_argument(std::string(name) + ": need at least 1 token slice, got " + std::to_string(token_slices));
}
}  // namespace

// K = 3 stages, M = 4 micro-batches, unit costs (time runs right; GPipe section 2.2,
// figure 2c; `minipipe simulate --grid` prints this):
//
//   stage 0 | F0 F1 F2 F3 .  .  .  .  B0 B1 B2 B3
//   stage 1 | .  F0 F1 F2 F3 .  .  B0 B1 B2 B3 .
//   stage 2 | .  .  F0 F1 F2 F3 B0 B1 B2 B3 .  .
//
// TeraPipe's order, K = 3, one sequence in S = 4 token slices (section 3):
//
//   stage 0 | F0.0 F0.1 F0.2 F0.3 .    .    .    .    B0.3 B0.2 B0.1 B0.0
//   stage 1 | .    F0.0 F0.1 F0.2 F0.3 .    .    B0.3 B0.2 B0.1 B0.0 .
//   stage 2 | .    .    F0.0 F0.1 F0.2 F0.3 B0.3 B0.2 B0.1 B0.0 .    .
Schedule gpipe_schedule(int stages, int micro_batches, int token_slices) {
  check_sizes("gpipe", stages, micro_batches, token_slices);
  Schedule s{"gpipe", stages, micro_batches, std::vector<Program>(stages)};
  s.token_slices = token_slices;
  for (Program& program : s.programs) {
    for (const Instruction& unit : forward_units(micro_batches, token_slices)) program.push_back(unit);
    for (const Instruction& unit : backward_units(micro_batches, token_slices)) program.push_back(unit);
  }
  add_communication(s);
  return s;
}

// K = 3, M = 4, unit costs: warm-up forwards (K - s - 1), then one forward / one backward,
// then drain. Stage s holds at most K - s micro-batches (GPipe's stage 0 holds all M):
//
//   stage 0 | F0 F1 F2 .  .  B0 F3 B1 .  B2 .  B3
//   stage 1 | .  F0 F1 .  B0 F2 B1 F3 B2 .  B3 .
//   stage 2 | .  .  F0 B0 F1 B1 F2 B2 F3 B3 .  .
//
// With token slices, K = 2, M = 2, S = 2: the warm-up is K - s - 1 + S - 1 units, since the
// first backward (the last slice of micro-batch 0) needs every slice of it forwarded:
//
//   stage 0 | F0.0 F0.1 F1.0 .    B0.1 F1.1 B0.0 .    B1.1 B1.0
//   stage 1 | .    F0.0 F0.1 B0.1 F1.0 B0.0 F1.1 B1.1 B1.0 .
Program one_f_one_b_order(int stage, int stages, int micro_batches, int token_slices) {
  return one_f_one_b_order(forward_units(micro_batches, token_slices), backward_units(micro_batches, token_slices),
                           stages - stage - 1 + token_slices - 1);
}

Program one_f_one_b_order(const std::vector<Instruction>& forwards, const std::vector<Instruction>& backwards, size_t warmup) {
  const size_t units = forwards.size();
  warmup = std::min(warmup, units);
  Program program(forwards.begin(), forwards.begin() + static_cast<std::ptrdiff_t>(warmup));
  size_t next_forward = warmup, next_backward = 0;
  while (next_forward < units) {  // steady state: one forward, one backward
    program.push_back(forwards[next_forward++]);
    program.push_back(backwards[next_backward++]);
  }
  while (next_backward < units) program.push_back(backwards[next_backward++]);  // drain
  return program;
}

Schedule one_f_one_b_schedule(int stages, int micro_batches, int token_slices) {
  check_sizes("1f1b", stages, micro_batches, token_slices);
  Schedule s{"1f1b", stages, micro_batches, std::vector<Program>(stages)};
  s.token_slices = token_slices;
  for (int stage = 0; stage < stages; ++stage)
    s.programs[stage] = one_f_one_b_order(stage, stages, micro_batches, token_slices);
  add_communication(s);
  return s;
}

// K = 2 stages of v = 2 chunks each (the model in 4 pieces: stage 0 holds pieces 0 and 2,
// stage 1 pieces 1 and 3), M = 4, unit costs; F1:0 is micro-batch 1 on chunk 0. Forwards go
// in groups of K micro-batches per chunk, chunk 0 first; backwards mirror them, last chunk
// first. Stage s runs 2 (K - s - 1) + (v - 1) K warm-up forwards (all of them when M = K;
// Megatron-LM's order). The grid counts one step per chunk's forward or backward; the 2
// empty steps per stage are the bubble, against (K - 1) (F + B) = 4 chunk steps for 1F1B:
//
//   stage 0 | F0:0 F1:0 F0:1 F1:1 F2:0 B0:1 F3:0 B1:1 F2:1 B0:0 F3:1 B1:0 .    B2:1 .    B3:1 B2:0 B3:0
//   stage 1 | .    F0:0 F1:0 F0:1 B0:1 F1:1 B1:1 F2:0 B0:0 F3:0 B1:0 F2:1 B2:1 F3:1 B3:1 B2:0 B3:0 .
//
// Each chunk does 1/v of a stage's work, so the fill and drain cost (K - 1) chunk steps
// instead of (K - 1) stage steps: the bubble shrinks to (K - 1) / (v M) of the ideal time
// (section 2.2), for v times the messages.
Schedule interleaved_schedule(int stages, int micro_batches, int virtual_stages) {
  check_sizes("interleaved", stages, micro_batches);
  if (stages < 2 || virtual_stages < 2)
    throw std::invalid_argument("interleaved: needs at least 2 stages and 2 virtual stages (model chunks) per stage, got " +
                                std::to_string(stages) + " and " + std::to_string(virtual_stages) +
                                "; with fewer, use 1f1b");
  if (micro_batches % stages != 0)
    throw std::invalid_argument("interleaved: the micro-batches go through the chunks in groups of K = " +
                                std::to_string(stages) + ", so M must be a multiple of " + std::to_string(stages) + "; got " +
                                std::to_string(micro_batches) + " (use " +
                                std::to_string((micro_batches + stages - 1) / stages * stages) + ")");
  Schedule s{"interleaved", stages, micro_batches, std::vector<Program>(stages)};
  s.virtual_stages = virtual_stages;
  const int group = stages * virtual_stages, units = micro_batches * virtual_stages;
  // The k-th forward (backward) of every stage: micro-batch and chunk.
  auto unit = [&](Op op, int k) {
    const int chunk = k % group / stages;
    return Instruction{op, k / group * stages + k % stages, -1, 0, op == Op::Forward ? chunk : virtual_stages - 1 - chunk};
  };
  for (int stage = 0; stage < stages; ++stage) {
    std::vector<Instruction> forwards, backwards;
    for (int k = 0; k < units; ++k) forwards.push_back(unit(Op::Forward, k)), backwards.push_back(unit(Op::Backward, k));
    const int warmup = micro_batches == stages ? units : 2 * (stages - stage - 1) + (virtual_stages - 1) * stages;
    s.programs[stage] = one_f_one_b_order(forwards, backwards, static_cast<size_t>(warmup));
  }
  add_communication(s);
  return s;
}

// Zero-bubble (Qi et al. ICLR 2024, sections 3 and 4). Each backward is split into B, the
// gradient of the stage's input, which the previous stage waits for, and W, the weight
// gradients, which nobody waits for. The order comes from the paper's greedy rule, run on
// unit costs (F = B = W): a stage that is free does a B if one is ready (it is on the
// critical path), else its oldest pending W if K - 1 already wait, else an F if one is
// ready and fewer than `limit` micro-batches are in flight on the stage (forwarded, not yet
// B), else its oldest pending W; the pending Ws fill what would be bubbles, and run in
// micro-batch order. ZB-H1 keeps 1F1B's limit, K - s, and its bubble shrinks from (K - 1)(F + B + W) to (K - 1)(F + B - W); ZB-H2 allows
// 2 (K - s) - 1 and fills the middle too (the paper's zero bubble also overlaps one step's
// drain with the next step's fill, which a flush at every step rules out): with F = B = W
// both leave (K - 1) of the 3 M steps idle. K = 4, M = 8
// (`minipipe simulate --schedule zb-h1 --stages 4 --micro-batches 8 --backward-cost 2 --grid`):
//
//   zb-h1
//   stage 0 | F0 F1 F2 F3 .  .  .  B0 F4 B1 F5 B2 F6 B3 W0 F7 B4 W1 W2 B5 W3 W4 B6 W5 W6 B7 W7
//   stage 1 | .  F0 F1 F2 .  .  B0 F3 B1 F4 B2 F5 B3 W0 F6 B4 W1 F7 B5 W2 W3 B6 W4 W5 B7 W6 W7
//   stage 2 | .  .  F0 F1 .  B0 F2 B1 F3 B2 F4 B3 W0 F5 B4 W1 F6 B5 W2 F7 B6 W3 W4 B7 W5 W6 W7
//   stage 3 | .  .  .  F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 B4 W1 F5 B5 W2 F6 B6 W3 F7 B7 W4 W5 W6 W7
//
//   zb-h2
//   stage 0 | F0 F1 F2 F3 F4 F5 F6 B0 F7 B1 W0 B2 W1 B3 W2 W3 B4 W4 .  B5 W5 .  B6 W6 .  B7 W7
//   stage 1 | .  F0 F1 F2 F3 F4 B0 F5 B1 F6 B2 F7 B3 W0 W1 B4 W2 W3 B5 W4 W5 B6 W6 .  B7 W7 .
//   stage 2 | .  .  F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 W0 F6 B4 W1 F7 B5 W2 W3 B6 W4 W5 B7 W6 W7 .
//   stage 3 | .  .  .  F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 B4 W1 F5 B5 W2 F6 B6 W3 F7 B7 W4 W5 W6 W7
Schedule zero_bubble_schedule(const std::string& name, int stages, int micro_batches) {
  check_sizes(name.c_str(), stages, micro_batches);
  const bool h2 = name == "zb-h2";
  if (!h2 && name != "zb-h1") throw std::invalid_argument("zero_bubble_schedule: '" + name + "' is not zb-h1 or zb-h2");
  Schedule s{name, stages, micro_batches, std::vector<Program>(stages)};
  const int never = -1;  // the step an op ended at, or never
  std::vector<std::vector<int>> forward_done(stages, std::vector<int>(micro_batches, never)),
      input_done(stages, std::vector<int>(micro_batches, never));  // B
  std::vector<int> next_forward(stages, 0), next_backward(stages, 0), next_weight(stages, 0);
  auto ready = [](int done, int step) { return done != never && done <= step; };
  int finished = 0;
  for (int step = 0; finished < stages; ++step) {
    for (int stage = 0; stage < stages; ++stage) {
      Program& program = s.programs[stage];
      int &f = next_forward[stage], &b = next_backward[stage], &w = next_weight[stage];
      if (w == micro_batches) continue;
      const int limit = h2 ? 2 * (stages - stage) - 1 : stages - stage;
      const bool backward_ready =
          b < f && (stage + 1 == stages ? ready(forward_done[stage][b], step) : ready(input_done[stage + 1][b], step));
      const bool forward_ready = f < micro_batches && f - b < limit && (stage == 0 || ready(forward_done[stage - 1][f], step));
      // Pending Ws keep what the weight gradients need (each linear layer's input and output
      // gradient), so at most K - 1 wait: one more goes before any forward. K - 1 is the
      // fewest that still fill the drain: with a smaller cap some M gets a larger bubble
      // than the one above (tried for K = 2..8, M = K..32).
      const bool weights_due = b - w > stages - 1;
      if (backward_ready) {
        program.push_back({Op::BackwardInput, b});
        input_done[stage][b++] = step + 1;
      } else if (weights_due) {
        program.push_back({Op::BackwardWeight, w++});
        if (w == micro_batches) ++finished;
      } else if (forward_ready) {
        program.push_back({Op::Forward, f});
        forward_done[stage][f++] = step + 1;
      } else if (w < b) {
        program.push_back({Op::BackwardWeight, w++});
        if (w == micro_batches) ++finished;
      }
    }
  }
  add_communication(s);
  return s;
}

const std::vector<ScheduleName>& schedule_names() {
  static const std::vector<ScheduleName> names{
      {"gpipe", "all forwards, then all backwards (GPipe; with token slices, TeraPipe's order)"},
      {"1f1b", "one forward, one backward, with a flush per mini-batch (PipeDream-Flush)"},
      {"interleaved", "1F1B over --virtual-stages model chunks per stage (Megatron's interleaving)"},
      {"zb-h1", "zero bubble: backwards split into B and W, 1F1B's memory until B"},
      {"zb-h2", "zero bubble with up to twice 1F1B's micro-batches in flight"},
      {"zb-v", "zero bubble on two chunks per stage in a V, at 1F1B's activation memory"},
      {"v-half", "the V with B and W split, at half of 1F1B's activation memory"},
      {"v-min", "the V with B and W split, at a third of 1F1B's activation memory"},
      {"zb-auto", "zero bubble placed from each stage's measured costs under a memory limit (--max-in-flight)"},
      {"dualpipev", "DeepSeek's DualPipeV: a V whose steady state pairs a forward with a backward (M >= 2K)"},
      {"pipedream", "asynchronous 1F1B, no flush between mini-batches (see --weights)"},
  };
  return names;
}

std::vector<std::string> schedule_name_list() {
  std::vector<std::string> list;
  for (const ScheduleName& s : schedule_names()) list.push_back(s.name);
  return list;
}

std::string schedule_names_text() {
  const std::vector<std::string> list = schedule_name_list();
  std::string text;
  for (size_t i = 0; i < list.size(); ++i) text += (i == 0 ? "" : i + 1 == list.size() ? " or " : ", ") + list[i];
  return text;
}

Schedule make_schedule(const std::string& name, int stages, int micro_batches, int token_slices, int virtual_stages) {
  ScheduleSpec spec;
  spec.name = name, spec.stages = stages, spec.micro_batches = micro_batches;
  spec.token_slices = token_slices, spec.virtual_stages = virtual_stages;
  return build_schedule(spec);
}

void add_communication(Schedule& schedule) {
  const int last = schedule.pieces() - 1;
  for (int worker = 0; worker < schedule.workers(); ++worker) {
    const int stage = schedule.stage_of(worker);
    Program with_communication;
    for (const Instruction& instruction : schedule.programs[worker]) {
      const int piece = schedule.piece_of(stage, instruction.chunk);
      auto message = [&](Op op) { return Instruction{op, instruction.micro_batch, -1, instruction.slice, instruction.chunk}; };
      if (instruction.op == Op::Forward) {
        if (piece > 0) with_communication.push_back(message(Op::ReceiveActivation));
        with_communication.push_back(instruction);
        if (piece < last) with_communication.push_back(message(Op::SendActivation));
      } else if (is_backward(instruction.op)) {
        if (piece < last) with_communication.push_back(message(Op::ReceiveGradient));
        with_communication.push_back(instruction);
        if (piece > 0) with_communication.push_back(message(Op::SendGradient));
      } else if (instruction.op == Op::BackwardWeight) {
        with_communication.push_back(instruction);
      } else if ((instruction.op == Op::OptimizerStep || instruction.op == Op::AllReduce) && schedule.asynchronous()) {
        with_communication.push_back(instruction);
      } else if (instruction.op != Op::OptimizerStep) {
        throw std::invalid_argument("add_communication: a generator's program may hold only Forward, Backward (or "
                                    "BackwardInput and BackwardWeight) and (asynchronous) AllReduce and OptimizerStep");
      }
    }
    if (!schedule.asynchronous()) with_communication.push_back({Op::OptimizerStep, -1});
    schedule.programs[worker] = std::move(with_communication);
  }
}

}  // namespace minipipe::pipeline
