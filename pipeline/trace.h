#pragma once
// Timelines of pipeline runs, measured or simulated (DESIGN.md decision 7): per worker (a
// stage, or one replica of a replicated stage) and instruction, when it ran and how many
// bytes the worker held afterwards. Written as
// Chrome-trace JSON (opens in Perfetto or chrome://tracing) and as an SVG picture.
#include <string>
#include <vector>

#include "pipeline/schedule.h"
#include "pipeline/simulator.h"

namespace minipipe::pipeline {

struct TraceEvent {
  int worker;  // the stage, unless stages are replicated (Schedule::stage_of)
  Instruction instruction;
  double start_us, end_us;  // since the start of the run
  int64_t bytes = 0;        // the worker's tracked bytes when the instruction ended
};

struct TraceSummary {
  double makespan_us = 0;
  double bubble_fraction = 0;  // idle time / total worker time: 1 - compute / (workers * makespan)
};
TraceSummary summarize(const std::vector<TraceEvent>& events, int workers);
// The rows a trace has: one more than its highest worker (0 for no events).
int workers_in(const std::vector<TraceEvent>& events);

// Where one worker's time went during a traced step (`minipipe explain`); the parts add up to
// the step's makespan (from the first event's start to the last event's end, over all workers).
struct WorkerTime {
  double compute_us = 0;              // Forward, Backward, B and W
  double waiting_activation_us = 0;   // in ReceiveActivation: the previous stage was not done
  double waiting_gradient_us = 0;     // in ReceiveGradient: the next stage was not done
  double idle_at_flush_us = 0;        // before its first instruction and after its last: fill and flush
  double other_us = 0;                // sends, optimizer and weight instructions, and the gaps between instructions
};
std::vector<WorkerTime> where_time_went(const std::vector<TraceEvent>& events, int workers);

// Simulated timelines in the same form (one cost unit = one microsecond).
std::vector<TraceEvent> to_trace(const SimulationResult& simulated);

void write_chrome_trace(const std::string& path, const std::vector<TraceEvent>& events);
// Reads what write_chrome_trace wrote (a file from `minipipe train --trace`), in file order;
// throws naming the file and what is wrong with it. Untrusted input: parse_chrome_trace is
// the in-memory reader under it, which the fuzzer (tests/fuzz) drives.
std::vector<TraceEvent> read_chrome_trace(const std::string& path);
std::vector<TraceEvent> parse_chrome_trace(const std::string& text);
// What a timeline's time axis counts: a measured run's milliseconds, or the simulator's cost
// units (to_trace: one unit is one "microsecond" of the events).
enum class TimeAxis { Milliseconds, CostUnits };
// One row per worker, labelled with its name (Schedule::worker_names); under the rows a time
// axis and a legend of the colours (F, B, W, later chunks darker, white for idle). A box's
// label (F3, B0.1, ...) is drawn only where it fits inside the box.
void write_svg_timeline(const std::string& path, const std::vector<TraceEvent>& events,
                        const std::vector<std::string>& worker_names, const std::string& title,
                        TimeAxis axis = TimeAxis::Milliseconds);
// The same pictures as text, to put in a page (`minipipe report`).
std::string timeline_svg(const std::vector<TraceEvent>& events, const std::vector<std::string>& worker_names,
                         const std::string& title, TimeAxis axis = TimeAxis::Milliseconds);
std::string comparison_svg(const std::vector<TraceEvent>& measured, const std::vector<TraceEvent>& predicted,
                           const std::vector<std::string>& worker_names, const std::string& title);
// Two timelines of one schedule on one time axis, each row split: measured above (filled),
// predicted below (outlined); each starts at its own first event.
void write_svg_comparison(const std::string& path, const std::vector<TraceEvent>& measured,
                          const std::vector<TraceEvent>& predicted, const std::vector<std::string>& worker_names,
                          const std::string& title);

}  // namespace minipipe::pipeline
