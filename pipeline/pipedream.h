#pragma once
// PipeDream's asynchronous pipeline (Narayanan et al., SOSP 2019, section 3): no flush
// between mini-batches; each stage updates its own weights as soon as its backwards of a
// mini-batch are done, and weight versions keep the gradients right (weight_versions.h).
#include <string>
#include <vector>

#include "pipeline/schedule.h"

namespace minipipe::pipeline {

// `micro_batches` units stream through K stages in 1F1B order (at most K - s in flight on
// stage s: NOAM = K admitted before the input stage's first backward, section 3.2); stage s
// applies its update after the backward of every `micro_batches_per_update`-th unit (1 for
// PipeDream, m >= K for PipeDream-2BW). The communication and weight-version passes run
// here, so the result is ready to validate and run. `micro_batches` must be a multiple of
// `micro_batches_per_update`.
//
// `replicas` (empty: one per stage) replicates stages (section 3.1): each replica of stage s
// runs 1F1B over its own round-robin share of the update groups, with ceil(W_s / r_s)
// micro-batches in flight, where W_s counts the workers of stages s..K-1 and r_s the
// replicas of s (NOAM = ceil(workers / r_0) on the input stage, section 3.2), and before
// each update an AllReduce averages the gradients of the stage's replicas. Every stage's
// replica count must divide the number of update groups. 2bw, which relies on every stage
// updating at once every m micro-batches, does not combine with replicated stages, nor does
// vertical sync unless every stage has the same number of replicas.
Schedule pipedream_schedule(int stages, int micro_batches, int micro_batches_per_update, WeightPolicy weights,
                            const std::vector<int>& replicas = {});

// Update groups that give every replica of every stage one each: the least common multiple
// of the replica counts (1 without replicas). A run streams a multiple of it.
int round_robin_groups(const std::vector<int>& replicas);

// "2,1": replicas per stage, as --replicas takes them.
std::string format_replicas(const std::vector<int>& replicas);

}  // namespace minipipe::pipeline
