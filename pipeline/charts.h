#pragma once
// Charts of what the simulator computes, as SVG line charts (`minipipe simulate`):
//
// - the bubble against M, schedule by schedule: the picture behind GPipe's (K - 1) / (M + K - 1)
//   and every later schedule's claim to shrink it. Each point is the simulator's bubble for
//   that schedule at that M with the same per-stage costs (a chunk of v costs 1/v of them), so
//   the chart and `minipipe simulate` cannot disagree;
// - PipeDream's weight versions per stage over time: how many copies of its weights each
//   stage holds as the stream runs (PipeDream section 3.3: stage s of K keeps up to K - s).
#include <string>
#include <vector>

#include "pipeline/schedule.h"
#include "pipeline/simulator.h"

namespace minipipe::pipeline {

struct BubbleCurve {
  std::string schedule;
  int virtual_stages = 1;
  std::vector<int> micro_batches;  // the M the schedule accepts (interleaved: multiples of K)
  std::vector<double> bubbles;     // simulated bubble fraction at each
};

// M = 1 .. max_micro_batches for each named synchronous schedule (interleaved with 2 chunks).
std::vector<BubbleCurve> bubble_curves(const std::vector<std::string>& schedules, int stages, int max_micro_batches,
                                       double forward_cost, double backward_cost);

// A line chart of the curves (bubble fraction against M), with GPipe's formula dashed under
// them and a legend; each point carries its value in a <title>.
std::string bubble_chart_svg(const std::vector<BubbleCurve>& curves, int stages);

// One step series per worker: (time, versions held from then on), starting at (0, 1) and
// changing at the end of each weight instruction or update, replayed from the timeline
// (several at one instant count as the last of them).
struct VersionStep {
  double time;
  int versions;
};
std::vector<std::vector<VersionStep>> weight_versions_over_time(const Schedule& schedule, const SimulationResult& result);

std::string weight_versions_svg(const std::vector<std::vector<VersionStep>>& series,
                                const std::vector<std::string>& worker_names, double makespan, const std::string& title);

}  // namespace minipipe::pipeline
