#include "pipeline/pipedream.h"

#include <stdexcept>
#include <string>

#include "pipeline/weight_versions.h"

namespace minipipe::pipeline {

// K = 3, 6 mini-batches, one update per mini-batch (U), unit costs, as `minipipe simulate
// --schedule pipedream --stages 3 --micro-batches 1 --mini-batches 6 --backward-cost 1
// --grid` prints it, with the weight version each forward and backward runs with in
// brackets (weight stashing):
//
//   stage 0 | F0[0]  F1[0]  F2[0]  .      .      B0[0]U F3[1]  B1[0]U F4[2]  B2[0]U F5[3]  B3[1]U .      B4[2]U ...
//   stage 1 | .      F0[0]  F1[0]  .      B0[0]U F2[1]  B1[0]U F3[2]  B2[1]U F4[3]  B3[2]U F5[4]  B4[3]U ...
//   stage 2 | .      .      F0[0]  B0[0]U F1[1]  B1[1]U F2[2]  B2[2]U F3[3]  B3[3]U F4[4]  B4[4]U ...
//
// The order is 1F1B's; what differs from PipeDream-Flush is that nobody waits for the end of
// a mini-batch to update: stage 0 runs forward 3 with version 1 while mini-batches 1 and 2,
// forwarded with version 0, are still in flight, and their backwards must find version 0.
Schedule pipedream_schedule(int stages, int micro_batches, int micro_batches_per_update, WeightPolicy weights) {
  if (stages < 1 || micro_batches < 1 || micro_batches_per_update < 1)
    throw std::invalid_argument("pipedream: need at least 1 stage, 1 micro-batch and 1 micro-batch per update, got " +
                                std::to_string(stages) + ", " + std::to_string(micro_batches) + " and " +
                                std::to_string(micro_batches_per_update));
  if (micro_batches % micro_batches_per_update != 0)
    throw std::invalid_argument("pipedream: " + std::to_string(micro_batches) + " micro-batches do not make whole updates of " +
                                std::to_string(micro_batches_per_update) + " micro-batches each");
  if (weights == WeightPolicy::TwoBuffered && micro_batches_per_update < stages)
    throw std::invalid_argument("2bw keeps two weight versions only when an update accumulates at least as many micro-batches "
                                "as there are stages (PipeDream-2BW, section 3.1): " + std::to_string(micro_batches_per_update) +
                                " micro-batches per update for " + std::to_string(stages) + " stages; use at least " +
                                std::to_string(stages));
  Schedule s{"pipedream", stages, micro_batches, std::vector<Program>(stages), micro_batches_per_update, weights};
  for (int stage = 0; stage < stages; ++stage) {
    for (const Instruction& compute : one_f_one_b_order(stage, stages, micro_batches)) {
      s.programs[stage].push_back(compute);
      if (compute.op == Op::Backward && (compute.micro_batch + 1) % micro_batches_per_update == 0)
        s.programs[stage].push_back({Op::OptimizerStep, compute.micro_batch});
    }
  }
  add_communication(s);
  assign_weight_versions(s);
  return s;
}

}  // namespace minipipe::pipeline
