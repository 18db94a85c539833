#include "pipeline/bubble_chart.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "pipeline/schedule.h"
#include "pipeline/simulator.h"

namespace minipipe::pipeline {

std::vector<BubbleCurve> bubble_curves(const std::vector<std::string>& schedules, int stages, int max_micro_batches,
                                       double forward_cost, double backward_cost) {
  if (stages < 1 || max_micro_batches < 1)
    throw std::invalid_argument("bubble_curves: need at least one stage and one micro-batch, got " +
                                std::to_string(stages) + " and " + std::to_string(max_micro_batches));
  std::vector<BubbleCurve> curves;
  for (const std::string& name : schedules) {
    BubbleCurve curve{name, name == "interleaved" ? 2 : is_v_schedule(name) ? 2 : 1, {}, {}};
    const double chunk_share = 1.0 / curve.virtual_stages;  // a chunk does 1/v of its stage's layers
    const CostModel costs = CostModel::uniform(stages, forward_cost * chunk_share, backward_cost * chunk_share);
    for (int m = 1; m <= max_micro_batches; ++m) {
      Schedule schedule;
      try {
        schedule = make_schedule(name, stages, m, 1, name == "interleaved" ? curve.virtual_stages : 1);
      } catch (const std::invalid_argument&) {
        continue;  // an M this schedule does not take (interleaved: not a multiple of K)
      }
      curve.micro_batches.push_back(m);
      curve.bubbles.push_back(simulate(schedule, costs).bubble_fraction);
    }
    curves.push_back(std::move(curve));
  }
  return curves;
}

namespace {
const char* const kColours[] = {"#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#9c755f", "#edc948"};
}  // namespace

std::string bubble_chart_svg(const std::vector<BubbleCurve>& curves, int stages) {
  int max_m = 1;
  for (const BubbleCurve& c : curves)
    for (int m : c.micro_batches) max_m = std::max(max_m, m);
  const double left = 50, top = 30, width = 560, height = 300, legend_left = left + width + 20;
  auto x_of = [&](double m) { return left + (max_m > 1 ? (m - 1) / (max_m - 1) : 0.5) * width; };
  auto y_of = [&](double bubble) { return top + (1 - bubble) * height; };
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << legend_left + 190 << "\" height=\"" << top + height + 50
      << "\" font-family=\"monospace\" font-size=\"11\">\n";
  out << "<text x=\"" << left << "\" y=\"18\">bubble fraction against micro-batches M, K = " << stages
      << " (simulated)</text>\n";
  // Axes, with a grid line every 0.2 of bubble and ticks at round values of M.
  for (int i = 0; i <= 5; ++i) {
    const double y = y_of(i / 5.0);
    out << "<line x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << left + width << "\" y2=\"" << y
        << "\" stroke=\"#ddd\"/>\n<text x=\"" << left - 30 << "\" y=\"" << y + 4 << "\">" << i / 5.0 << "</text>\n";
  }
  const int tick = max_m <= 16 ? 1 : max_m <= 40 ? 4 : 10;
  for (int m = 1; m <= max_m; m += (m == 1 && tick > 1 ? tick - 1 : tick))
    out << "<text x=\"" << x_of(m) - 3 << "\" y=\"" << top + height + 16 << "\">" << m << "</text>\n";
  out << "<text x=\"" << left + width / 2 - 10 << "\" y=\"" << top + height + 36 << "\">M</text>\n";
  out << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << width << "\" height=\"" << height
      << "\" fill=\"none\" stroke=\"#444\"/>\n";
  // GPipe's formula, (K - 1) / (M + K - 1), dashed.
  out << "<polyline fill=\"none\" stroke=\"#888\" stroke-dasharray=\"5,4\" points=\"";
  for (int m = 1; m <= max_m; ++m) out << x_of(m) << "," << y_of((stages - 1.0) / (m + stages - 1.0)) << " ";
  out << "\"/>\n";
  int index = 0;
  for (const BubbleCurve& c : curves) {
    const char* colour = kColours[index % 8];
    // Curves that coincide (GPipe and 1F1B with equal costs) stay visible: each later one dashed.
    out << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"2\""
        << (index % 2 ? " stroke-dasharray=\"8,3\"" : "") << " points=\"";
    for (size_t i = 0; i < c.micro_batches.size(); ++i) out << x_of(c.micro_batches[i]) << "," << y_of(c.bubbles[i]) << " ";
    out << "\"/>\n";
    for (size_t i = 0; i < c.micro_batches.size(); ++i)
      out << "<circle cx=\"" << x_of(c.micro_batches[i]) << "\" cy=\"" << y_of(c.bubbles[i]) << "\" r=\"2.5\" fill=\""
          << colour << "\"><title>" << c.schedule << " M = " << c.micro_batches[i] << ": " << c.bubbles[i]
          << "</title></circle>\n";
    const double y = top + 10 + 18 * index;
    out << "<line x1=\"" << legend_left << "\" y1=\"" << y << "\" x2=\"" << legend_left + 24 << "\" y2=\"" << y
        << "\" stroke=\"" << colour << "\" stroke-width=\"2\"/>\n<text x=\"" << legend_left + 30 << "\" y=\"" << y + 4
        << "\">" << c.schedule << (c.virtual_stages > 1 ? " (2 chunks)" : "") << "</text>\n";
    ++index;
  }
  const double y = top + 10 + 18 * index;
  out << "<line x1=\"" << legend_left << "\" y1=\"" << y << "\" x2=\"" << legend_left + 24 << "\" y2=\"" << y
      << "\" stroke=\"#888\" stroke-dasharray=\"5,4\"/>\n<text x=\"" << legend_left + 30 << "\" y=\"" << y + 4
      << "\">(K-1)/(M+K-1)</text>\n</svg>\n";
  return out.str();
}

}  // namespace minipipe::pipeline
