#pragma once
// The bubble against M, schedule by schedule: the picture behind GPipe's (K - 1) / (M + K - 1)
// and every later schedule's claim to shrink it. Each point is the simulator's bubble for
// that schedule at that M with the same per-stage costs (a chunk of v costs 1/v of them), so
// the chart and `minipipe simulate` cannot disagree.
#include <string>
#include <vector>

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

}  // namespace minipipe::pipeline
