#pragma once
// PipeDream's asynchronous pipeline (Narayanan et al., SOSP 2019, section 3): no flush
// between mini-batches; each stage updates its own weights as soon as its backwards of a
// mini-batch are done, and weight versions keep the gradients right (weight_versions.h).
#include "pipeline/schedule.h"

namespace minipipe::pipeline {

// `micro_batches` units stream through K stages in 1F1B order (at most K - s in flight on
// stage s: NOAM = K admitted before the input stage's first backward, section 3.2); stage s
// applies its update after the backward of every `micro_batches_per_update`-th unit (1 for
// PipeDream, m >= K for PipeDream-2BW). The communication and weight-version passes run
// here, so the result is ready to validate and run. `micro_batches` must be a multiple of
// `micro_batches_per_update`.
Schedule pipedream_schedule(int stages, int micro_batches, int micro_batches_per_update, WeightPolicy weights);

}  // namespace minipipe::pipeline
