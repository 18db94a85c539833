#include "pipeline/run_state.h"

#include <cstdio>

namespace minipipe::pipeline {

void RunState::fail(int worker, Instruction instruction, std::exception_ptr e) {
  {
    std::lock_guard lock(error_mutex);
    if (error) return;
    error = e, error_worker = worker, error_instruction = instruction;
  }
  for (auto& [key, c] : channels) c->close();
  skips.close();
  for (auto& [key, c] : remote_skips) c->close();
  for (auto& a : all_reduces)
    if (a) a->close();
}

namespace {
// What a blocked worker waits for.
std::string waiting_for(const Schedule& schedule, int worker, const Instruction& i) {
  if (i.op == Op::AllReduce) return "the stage's other replicas";
  if (i.op != Op::ReceiveActivation && i.op != Op::ReceiveGradient)
    return std::string("a skip connection's ") + (i.op == Op::Forward ? "tensor" : "gradient");
  return std::string(i.op == Op::ReceiveActivation ? "the activation" : "the gradient") + " from " +
         schedule.worker_name(schedule.channel_of(worker, i).from);
}
}  // namespace

std::string describe_progress(const Schedule& schedule, const RunState& state, double seconds) {
  char header[96];
  std::snprintf(header, sizeof header, "pipeline status, %.2f s into the run:\n", seconds);
  std::string out = header;
  for (int w = 0; w < schedule.workers(); ++w) {
    const WorkerProgress& p = *state.progress[w];
    const Program& program = schedule.programs[w];
    out += "  " + schedule.worker_name(w) + ": ";
    const int at = p.position.load();
    if (p.done.load() || at < 0) {
      out += p.done.load() ? "done\n" : "not started\n";
      continue;
    }
    const Instruction& i = program[at];
    out += "instruction " + std::to_string(at + 1) + " of " + std::to_string(program.size()) + ", " + instruction_text(i, schedule);
    if (p.waiting.load()) out += ", waiting for " + waiting_for(schedule, w, i);
    out += "; " + std::to_string(p.in_flight.load()) + " in flight\n";
  }
  return out;
}

}  // namespace minipipe::pipeline
