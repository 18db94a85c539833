#pragma once
// A schedule is data (DESIGN.md decision 5): one program per stage, a list of instructions
// that one executor runs and one simulator times. Generators (GPipe, 1F1B) only order the
// compute; add_communication() then inserts the sends and receives around it, so every
// schedule gets the same, correct communication.
#include <string>
#include <vector>

namespace minipipe::pipeline {

enum class Op {
  Forward,            // run the stage's layers on micro-batch m
  Backward,           // backpropagate micro-batch m through the stage
  SendActivation,     // stage output of m -> next stage
  ReceiveActivation,  // stage input of m <- previous stage
  SendGradient,       // gradient of the stage input of m -> previous stage
  ReceiveGradient,    // gradient of the stage output of m <- next stage
  OptimizerStep,      // apply the gradients accumulated over all micro-batches
};

const char* op_name(Op op);

struct Instruction {
  Op op;
  int micro_batch = -1;  // -1 for OptimizerStep
  bool operator==(const Instruction&) const = default;
};

using Program = std::vector<Instruction>;

struct Schedule {
  std::string name;
  int stages = 0;
  int micro_batches = 0;
  std::vector<Program> programs;  // one per stage
};

// GPipe (Huang et al. 2019, section 2.2, figure 2c): all forwards, then all backwards.
Schedule gpipe_schedule(int stages, int micro_batches);
// 1F1B with a flush per mini-batch (PipeDream-Flush; Narayanan et al. 2021, and the
// steady state of PipeDream, section 3.2): stage s runs K - s - 1 warm-up forwards, then
// alternates one forward and one backward, then drains; at most K - s micro-batches are
// in flight on stage s.
Schedule one_f_one_b_schedule(int stages, int micro_batches);
// By name: "gpipe" or "1f1b".
Schedule make_schedule(const std::string& name, int stages, int micro_batches);

// Inserts ReceiveActivation before and SendActivation after each Forward, ReceiveGradient
// before and SendGradient after each Backward (none across the pipeline's two ends), and
// an OptimizerStep at the end of every program.
void add_communication(Schedule& schedule);

}  // namespace minipipe::pipeline
