#include "pipeline/pipedream.h"

#include <algorithm>
#include <numeric>
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
namespace {
void check_replicas(int stages, int micro_batches, int micro_batches_per_update, WeightPolicy weights,
                    const std::vector<int>& replicas) {
  if (replicas.empty()) return;
  if (static_cast<int>(replicas.size()) != stages)
    throw std::invalid_argument("pipedream: " + std::to_string(replicas.size()) + " replica counts for " +
                                std::to_string(stages) + " stages");
  const int groups = micro_batches / micro_batches_per_update;
  for (int s = 0; s < stages; ++s) {
    if (replicas[s] < 1)
      throw std::invalid_argument("pipedream: stage " + std::to_string(s) + " has " + std::to_string(replicas[s]) +
                                  " replicas; every stage needs at least 1");
    if (groups % replicas[s] != 0)
      throw std::invalid_argument("pipedream: stage " + std::to_string(s) + "'s " + std::to_string(replicas[s]) +
                                  " replicas take the " + std::to_string(groups) +
                                  " mini-batches round-robin and must get as many each: stream a multiple of " +
                                  std::to_string(replicas[s]) + " mini-batches");
  }
  const bool replicated = std::any_of(replicas.begin(), replicas.end(), [](int r) { return r > 1; });
  const bool uniform = std::all_of(replicas.begin(), replicas.end(), [&](int r) { return r == replicas[0]; });
  if (replicated && weights == WeightPolicy::TwoBuffered)
    throw std::invalid_argument("pipedream: 2bw does not run with replicated stages (PipeDream-2BW replicates whole "
                                "pipelines); use --weights stash, or one replica per stage");
  if (replicated && weights == WeightPolicy::VerticalSync && !uniform)
    throw std::invalid_argument("pipedream: vertical sync needs every stage to update as often as the input stage, so every "
                                "stage must have the same number of replicas; use --weights stash");
}
}  // namespace

Schedule pipedream_schedule(int stages, int micro_batches, int micro_batches_per_update, WeightPolicy weights,
                            const std::vector<int>& replicas) {
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
  check_replicas(stages, micro_batches, micro_batches_per_update, weights, replicas);
  Schedule s{"pipedream", stages, micro_batches, {}, micro_batches_per_update, weights};
  if (std::any_of(replicas.begin(), replicas.end(), [](int r) { return r > 1; })) s.replicas = replicas;
  int workers_downstream = 0;  // W_s: the workers of stages s..K-1
  for (int stage = 0; stage < stages; ++stage) workers_downstream += s.replicas_of(stage);
  for (int stage = 0; stage < stages; ++stage) {
    const int r = s.replicas_of(stage);
    const int in_flight = (workers_downstream + r - 1) / r;  // K - s without replicas
    for (int replica = 0; replica < r; ++replica) {
      std::vector<Instruction> forwards, backwards;
      for (int m = 0; m < micro_batches; ++m)
        if (s.replica_for(stage, m) == replica) forwards.push_back({Op::Forward, m}), backwards.push_back({Op::Backward, m});
      Program& program = s.programs.emplace_back();
      for (const Instruction& compute : one_f_one_b_order(forwards, backwards, in_flight - 1)) {
        program.push_back(compute);
        if (compute.op == Op::Backward && (compute.micro_batch + 1) % micro_batches_per_update == 0) {
          if (r > 1) program.push_back({Op::AllReduce, compute.micro_batch});
          program.push_back({Op::OptimizerStep, compute.micro_batch});
        }
      }
    }
    workers_downstream -= r;
  }
  add_communication(s);
  assign_weight_versions(s);
  return s;
}

int round_robin_groups(const std::vector<int>& replicas) {
  int groups = 1;
  for (int r : replicas) groups = std::lcm(groups, std::max(r, 1));
  return groups;
}

std::string format_replicas(const std::vector<int>& replicas) {
  std::string out;
  for (size_t s = 0; s < replicas.size(); ++s) out += (s ? "," : "") + std::to_string(replicas[s]);
  return out;
}

}  // namespace minipipe::pipeline
