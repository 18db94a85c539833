#pragma once
// PyTorch's schedule files (torch.distributed.pipelining's `_load_csv` / `_dump_csv`): a
// compute-only schedule as CSV, one row per rank (a stage of minipipe's), each cell one action
// `<stage><type><micro-batch>`, where the stage is the global index of a piece of the model
// and the type F (forward), I (backward for the input: zero bubble's B), W (backward for the
// weights) or B (the whole backward); an empty cell is idle. Which pieces a rank holds follows
// from its row: minipipe reads looped placements (rank r holds r, r + K, ...) and V ones
// (r, 2K - 1 - r, ...). Sends, receives and the closing OptimizerStep are minipipe's own to
// add (add_communication), as PyTorch's runtime adds its own.
#include <string>

#include "pipeline/schedule.h"

namespace minipipe::pipeline {

// One row per stage: its compute instructions in program order. Throws ScheduleError for
// what the format cannot say: token slices, replicated stages, weight versions (pipedream).
std::string schedule_to_csv(const Schedule& schedule);
// The schedule a CSV describes, validated. Throws ScheduleError naming the rank, the column
// (from 1) and the reason: an unknown or malformed action, a stage on two ranks, a placement
// other than looped or V, a backward before its forward; or the validator's message (a unit
// missing or run twice, a deadlock).
Schedule schedule_from_csv(const std::string& text, const std::string& name);

// The same through files; the schedule is named after the file.
Schedule read_schedule_file(const std::string& path);
void write_schedule_file(const std::string& path, const Schedule& schedule);

}  // namespace minipipe::pipeline
