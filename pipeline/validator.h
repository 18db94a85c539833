#pragma once
// Checks a schedule before anything runs (the most common pipeline hang users report is a
// mismatched send/receive order; torch.distributed.pipelining validates for the same reason).
#include "pipeline/schedule.h"
#include "pipeline/simulator.h"

namespace minipipe::pipeline {

struct ValidationReport {
  std::vector<int> peak_in_flight;  // per stage
};

// Throws ScheduleError listing what is wrong: a micro-batch forwarded or backwarded other
// than exactly once, a backward before its forward, a receive after the compute that needs
// it or a send before the compute that produces it, a send without its receive (or the
// reverse), a missing or misplaced OptimizerStep, and (by simulating) any order of sends and
// receives that would deadlock.
ValidationReport validate(const Schedule& schedule);

// The step-by-stage grid of the schedule with unit forward and backward costs:
//   stage 0 | F0 F1 F2 .  .  B0 F3 ...
std::string format_grid(const Schedule& schedule);

}  // namespace minipipe::pipeline
