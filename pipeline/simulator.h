#pragma once
// A discrete-event simulator of schedules: each worker (a stage, or one replica of a
// replicated stage) runs its program in order; a compute instruction takes its stage's cost; a
// receive waits for the matching send (channels between two workers are first-in first-out);
// an AllReduce waits for the same AllReduce on every replica of its stage. The same programs run on the executor, so predicted and measured
// timelines can be laid side by side.
#include <stdexcept>
#include <vector>

#include "pipeline/schedule.h"

namespace minipipe::pipeline {

struct CostModel {
  std::vector<double> forward, backward;  // per stage (backward: B and W together)
  double communication = 0.0;             // added to every message's arrival
  std::vector<double> update;             // per stage, one OptimizerStep (empty: free)
  std::vector<double> all_reduce;         // per stage, one AllReduce among its replicas (empty: free)
  // Token-sliced schedules: [stage][slice] costs, since a later slice attends over more
  // context and costs more (TeraPipe section 3.3). Empty: every slice costs forward[stage]
  // and backward[stage].
  std::vector<std::vector<double>> slice_forward, slice_backward;
  // Zero-bubble: per stage, the part of `backward` that is W (the weight gradients); B costs
  // the rest. Empty: half of it.
  std::vector<double> backward_weight;
  double compute_cost(int stage, const Instruction& instruction) const;  // of a compute instruction
  static CostModel uniform(int stages, double forward_cost, double backward_cost);
};

struct TimedInstruction {
  int worker;  // the stage, unless stages are replicated (Schedule::stage_of)
  Instruction instruction;
  double start, end;
};

struct SimulationResult {
  double makespan = 0.0;
  double bubble_fraction = 0.0;          // idle time / total worker time, over all workers
  std::vector<int> peak_in_flight;       // per worker: most units (micro-batches, or their token slices)
                                         // forwarded, not yet backwarded
  std::vector<int> peak_weight_versions;  // per worker: most weight versions held at once (1 if synchronous)
  std::vector<TimedInstruction> timeline;  // every instruction, in the order it ran
};

// Throws ScheduleError on a receive whose sender sends another micro-batch first, or on a
// deadlock (every unfinished worker waits on a receive or an AllReduce).
SimulationResult simulate(const Schedule& schedule, const CostModel& costs);

// GPipe's formula (section 2.2): with K stages, M micro-batches and equal costs the
// bubble is (K - 1) / (M + K - 1). Interleaved over v chunks per stage (Narayanan et al.
// SC 2021, section 2.2), the bubble is (K - 1) / (v M) of the ideal time, so its fraction of
// all stage time is (K - 1) / (v M + K - 1).
double theoretical_bubble_fraction(int stages, int micro_batches, int virtual_stages = 1);

}  // namespace minipipe::pipeline
