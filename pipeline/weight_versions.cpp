#include "pipeline/weight_versions.h"

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace minipipe::pipeline {

namespace {

// Step 1: the version each Forward and Backward runs with, and the one each OptimizerStep
// makes. A forward runs with the stage's latest weights, except under vertical sync, where
// every stage uses the version the input stage's forward used (so stage 0 goes first). The
// backward runs with its forward's version, except under `none`, where it takes the latest.
void decide_versions(Schedule& schedule) {
  std::vector<int> input_stage_version(schedule.micro_batches, -1);
  for (int worker = 0; worker < schedule.workers(); ++worker) {  // stage by stage
    const int s = schedule.stage_of(worker);
    std::map<int, int> forward_version;
    int latest = 0;
    for (Instruction& instruction : schedule.programs[worker]) {
      const int m = instruction.micro_batch;
      if (instruction.op == Op::Forward) {
        const bool follow_input_stage = schedule.weights == WeightPolicy::VerticalSync && s > 0;
        instruction.version = follow_input_stage ? input_stage_version.at(m) : latest;
        forward_version[m] = instruction.version;
        if (s == 0) input_stage_version.at(m) = instruction.version;
      } else if (instruction.op == Op::Backward) {
        instruction.version = schedule.weights == WeightPolicy::None ? latest : forward_version.at(m);
      } else if (instruction.op == Op::OptimizerStep) {
        instruction.version = ++latest;
      }
    }
  }
}

// The version an instruction reads from the parameters (an update reads the latest), or -1.
int version_read(const Instruction& instruction) {
  if (is_compute(instruction.op)) return instruction.version;
  if (instruction.op == Op::OptimizerStep) return instruction.version - 1;
  return -1;
}

// Step 2: before an update overwrites a version that something later reads, stash a copy
// of it (the one copy a version costs); before an instruction that reads a version the
// parameters do not hold, exchange it in (LoadWeights keeps what the parameters held in the
// stash, at no cost); after each instruction, drop the stashed versions nothing later reads.
// An update's AllReduce (replicated stages) stays right before it, after these.
Program with_stash_load_drop(const Program& program) {
  std::map<int, size_t> last_read;  // version -> position of its last reader
  for (size_t i = 0; i < program.size(); ++i)
    if (version_read(program[i]) >= 0) last_read[version_read(program[i])] = i;
  auto read_from = [&](int version, size_t i) { return last_read.count(version) && last_read[version] >= i; };

  Program out;
  int live = 0;
  std::set<int> stashed;
  auto drop_unless_read_from = [&](size_t i) {
    for (auto it = stashed.begin(); it != stashed.end();) {
      if (read_from(*it, i)) {
        ++it;
      } else {
        out.push_back({Op::DropWeights, -1, *it});
        it = stashed.erase(it);
      }
    }
  };
  std::optional<Instruction> all_reduce;  // held back to stay just before its update
  for (size_t i = 0; i < program.size(); ++i) {
    const Instruction& instruction = program[i];
    if (instruction.op == Op::AllReduce) {
      all_reduce = instruction;
      continue;
    }
    const int needed = version_read(instruction);
    if (needed >= 0 && needed != live) {
      if (!stashed.count(needed))
        throw std::logic_error("assign_weight_versions: version " + std::to_string(needed) + " is needed but was never kept");
      out.push_back({Op::LoadWeights, -1, needed});
      stashed.erase(needed);
      stashed.insert(live);
      live = needed;
      drop_unless_read_from(i);  // the version exchanged out may be one nothing reads again
    }
    if (instruction.op == Op::OptimizerStep && read_from(live, i + 1) && !stashed.count(live)) {
      out.push_back({Op::StashWeights, -1, live});
      stashed.insert(live);
    }
    if (all_reduce) out.push_back(*all_reduce), all_reduce.reset();
    out.push_back(instruction);
    if (instruction.op == Op::OptimizerStep) live = instruction.version;
    drop_unless_read_from(i + 1);
  }
  return out;
}

}  // namespace

void assign_weight_versions(Schedule& schedule) {
  if (!schedule.asynchronous()) throw std::invalid_argument("assign_weight_versions: '" + schedule.name + "' is synchronous");
  decide_versions(schedule);
  for (Program& program : schedule.programs) program = with_stash_load_drop(program);
}

void WeightVersionState::apply(const Instruction& instruction) {
  const std::string v = std::to_string(instruction.version);
  switch (instruction.op) {
    case Op::Forward:
    case Op::Backward:
      if (instruction.version >= 0 && instruction.version != live_)
        throw std::logic_error(std::string(op_name(instruction.op)) + " must run with weight version " + v +
                               " but the parameters hold version " + std::to_string(live_));
      break;
    case Op::OptimizerStep:
      if (instruction.version < 0) break;  // synchronous: one version throughout
      if (live_ != latest_ || instruction.version != latest_ + 1)
        throw std::logic_error("an update must start from the latest weights (version " + std::to_string(latest_) +
                               ") and make version " + std::to_string(latest_ + 1) + "; the parameters hold version " +
                               std::to_string(live_) + " and the update names version " + v);
      live_ = latest_ = instruction.version;
      break;
    case Op::StashWeights:
      if (instruction.version != live_ || stashed_.count(live_))
        throw std::logic_error("StashWeights of version " + v + ": the parameters hold version " + std::to_string(live_) +
                               (stashed_.count(live_) ? ", which is stashed already" : ""));
      stashed_.insert(live_);
      break;
    case Op::LoadWeights:  // an exchange: what the parameters held goes into the stash
      if (!stashed_.erase(instruction.version))
        throw std::logic_error("LoadWeights of version " + v + ", which is not stashed");
      stashed_.insert(live_);
      live_ = instruction.version;
      break;
    case Op::DropWeights:
      if (!stashed_.erase(instruction.version)) throw std::logic_error("DropWeights of version " + v + ", which is not stashed");
      break;
    default:
      break;
  }
}

}  // namespace minipipe::pipeline
