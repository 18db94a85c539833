#pragma once
// The schedule's flags (--schedule, --stages, --micro-batches, --virtual-stages,
// --token-slices, --weights, --replicas) as the library's one description of a schedule,
// pipeline::ScheduleSpec, checked by its one rule book (ScheduleSpec::check).
#include <string>
#include <vector>

#include "commands.h"
#include "pipeline/schedule_spec.h"

namespace minipipe::cli {

// `train`'s flags; --token-slices auto leaves the count at 1 (the planner chooses later).
pipeline::ScheduleSpec schedule_spec(const PipelineFlags& flags);
// `simulate`'s flags, with its --mini-batches streamed under pipedream.
pipeline::ScheduleSpec schedule_spec(const SimulateOptions& options);
// --replicas: one count per stage, like "2,1" (empty: none).
std::vector<int> parse_replicas(const std::string& list);

}  // namespace minipipe::cli
