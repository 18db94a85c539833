#pragma once
// A schedule by its parameters, simulated on uniform costs, with the bubble its formula
// predicts beside the simulated one: what `minipipe simulate` prints, as one library call
// that the command and the course's playground (compiled to WebAssembly) share.
#include <string>

#include "pipeline/schedule_spec.h"
#include "pipeline/simulator.h"

namespace minipipe::pipeline {

// One stage's costs, in any unit; a chunk of an interleaved schedule costs 1/v of them.
struct UniformCosts {
  double forward = 1.0, backward = 2.0;  // backward: B and W together
  double weight = -1.0;                  // W's part of the backward (zero bubble); negative: half
  double communication = 0.0;            // of one message between stages
  double weight_part() const { return weight < 0 ? backward / 2 : weight; }
};

struct SimulatedSpec {
  Schedule schedule;
  CostModel costs;  // per stage (per chunk for interleaved schedules), as simulated
  SimulationResult result;
  // The schedule's formula for these costs: GPipe's (K-1)/(M+K-1), interleaved (K-1)/(vM+K-1)
  // with token slices counted as units; zero bubble's (section 2 of Qi et al. 2024); a V's
  // fill alone; a schedule file is set beside 1F1B's. `formula` writes it out.
  double formula_bubble = 0.0;
  std::string formula;
  // What the formula's letters are here, to follow its value: ", W = 1.5" or ", W half the
  // backward" (zero bubble), ", M = 8 micro-batches in all" (units where tokens are sliced).
  std::string formula_terms;
};

// Throws std::invalid_argument for a weight part outside [0, backward], and what
// build_schedule throws for parameters that do not combine. zb-auto without its own costs in
// the spec is placed by these.
SimulatedSpec simulate_spec(ScheduleSpec spec, const UniformCosts& costs);

}  // namespace minipipe::pipeline
