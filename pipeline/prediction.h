#pragma once
// Predicted against measured: the simulator's timeline of a schedule, costed from a traced
// run's own per-stage times, laid beside that run (`minipipe simulate --compare`). Where the
// two disagree, something the cost model leaves out took the time: messages, the host
// between instructions, or stages that share cores.
#include <vector>

#include "pipeline/schedule.h"
#include "pipeline/simulator.h"
#include "pipeline/trace.h"

namespace minipipe::pipeline {

// Per stage, the median time of its Forward, Backward (B + W under zero bubble, with W apart)
// and, for token slices, of each slice, in microseconds; messages cost `communication_us`.
// Throws if the trace's workers are not the schedule's.
CostModel costs_from_trace(const std::vector<TraceEvent>& measured, const Schedule& schedule, double communication_us = 0);

struct InstructionTimes {
  int worker;
  Instruction instruction;
  double measured_start_us, measured_end_us;    // since the measured step's first event
  double predicted_start_us, predicted_end_us;  // since the predicted step's first event
};
// Every compute instruction of `measured` with its predicted times, in measured order. Throws
// unless the two have the same compute instructions (else the trace is of another schedule).
std::vector<InstructionTimes> match_instructions(const std::vector<TraceEvent>& measured,
                                                 const std::vector<TraceEvent>& predicted);

}  // namespace minipipe::pipeline
