#include "pipeline/charts.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "pipeline/weight_versions.h"

namespace minipipe::pipeline {

std::vector<BubbleCurve> bubble_curves(const std::vector<std::string>& schedules, int stages, int max_micro_batches,
                                       double forward_cost, double backward_cost) {
  if (stages < 1 || max_micro_batches < 1)
    throw std::invalid_argument("bubble_curves: need at least one stage and one micro-batch, got " +
                                std::to_string(stages) + " and " + std::to_string(max_micro_batches));
  std::vector<BubbleCurve> curves;
  for (const std::string& name : schedules) {
    BubbleCurve curve{name, name == "interleaved" || is_v_schedule(name) ? 2 : 1, {}, {}};
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

// A legend line: a short stroke and its text.
void legend_entry(std::ostringstream& out, double x, double y, const char* colour, const std::string& text,
                  bool dashed = false) {
  out << "<line x1=\"" << x << "\" y1=\"" << y << "\" x2=\"" << x + 24 << "\" y2=\"" << y << "\" stroke=\"" << colour
      << "\" stroke-width=\"2\"" << (dashed ? " stroke-dasharray=\"5,4\"" : "") << "/>\n<text x=\"" << x + 30
      << "\" y=\"" << y + 4 << "\">" << text << "</text>\n";
}
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
  for (int m = 1; m <= max_m; ++m) out << x_of(m) << "," << y_of(theoretical_bubble_fraction(stages, m)) << " ";
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
    legend_entry(out, legend_left, top + 10 + 18 * index, colour,
                 c.schedule + (c.virtual_stages > 1 ? " (2 chunks)" : ""));
    ++index;
  }
  legend_entry(out, legend_left, top + 10 + 18 * index, "#888", "(K-1)/(M+K-1)", true);
  out << "</svg>\n";
  return out.str();
}

namespace {
// Appends (time, value) to a staircase: of several changes at one instant the last holds.
void step_to(Staircase& steps, double time, double value) {
  if (steps.size() > 1 && steps.back().time == time) steps.pop_back();
  if (value != steps.back().value) steps.push_back({time, value});
}
}  // namespace

std::vector<Staircase> weight_versions_over_time(const Schedule& schedule, const SimulationResult& result) {
  std::vector<WeightVersionState> states(static_cast<size_t>(schedule.workers()));
  std::vector<Staircase> series(static_cast<size_t>(schedule.workers()), {{0.0, 1}});
  for (const TimedInstruction& t : result.timeline) {
    const Op op = t.instruction.op;
    if (op != Op::StashWeights && op != Op::LoadWeights && op != Op::DropWeights && op != Op::OptimizerStep) continue;
    WeightVersionState& state = states[static_cast<size_t>(t.worker)];
    state.apply(t.instruction);
    step_to(series[static_cast<size_t>(t.worker)], t.end, state.versions_held());
  }
  return series;
}

std::vector<Staircase> in_flight_over_time(const Schedule& schedule, const SimulationResult& result) {
  std::vector<Staircase> series(static_cast<size_t>(schedule.workers()), {{0.0, 0}});
  for (const TimedInstruction& t : result.timeline) {
    const int change = in_flight_change(t.instruction.op);
    if (change == 0) continue;
    Staircase& steps = series[static_cast<size_t>(t.worker)];
    step_to(steps, t.end, steps.back().value + change);
  }
  return series;
}

std::vector<Staircase> memory_over_time(const std::vector<TraceEvent>& events, int workers) {
  std::vector<Staircase> series(static_cast<size_t>(std::max(workers, 0)));
  if (events.empty()) return series;
  double first = events.front().start_us;
  for (const TraceEvent& e : events) first = std::min(first, e.start_us);
  std::vector<const TraceEvent*> in_order;
  for (const TraceEvent& e : events) in_order.push_back(&e);
  std::stable_sort(in_order.begin(), in_order.end(), [](const TraceEvent* a, const TraceEvent* b) { return a->end_us < b->end_us; });
  for (const TraceEvent* e : in_order) {
    if (e->worker < 0 || e->worker >= workers) continue;
    Staircase& steps = series[static_cast<size_t>(e->worker)];
    const double ms = (e->end_us - first) / 1e3, mebibytes = static_cast<double>(e->bytes) / (1 << 20);
    if (steps.empty()) steps.push_back({ms, mebibytes});
    else step_to(steps, ms, mebibytes);
  }
  return series;
}

std::string staircase_svg(const std::vector<Staircase>& series, const std::vector<std::string>& worker_names,
                          double makespan, const std::string& title, const std::string& value_label,
                          const std::string& time_label) {
  int most = 1;  // the top grid line: the largest value, rounded up
  for (const Staircase& steps : series)
    for (const StairStep& step : steps) most = std::max(most, static_cast<int>(std::ceil(step.value)));
  const double left = 50, top = 44, width = 700, height = std::clamp(40.0 * most, 120.0, 360.0),
               legend_left = left + width + 20;
  const double end = makespan > 0 ? makespan : 1;
  auto x_of = [&](double time) { return left + time / end * width; };
  auto y_of = [&](double value) { return top + (1 - value / (most + 0.5)) * height; };
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << legend_left + 120 << "\" height=\"" << top + height + 50
      << "\" font-family=\"monospace\" font-size=\"11\">\n<text x=\"" << left << "\" y=\"18\">" << title << "</text>\n";
  const int every = (most + 7) / 8;  // at most nine grid lines
  for (int v = 0; v <= most; v += every) {
    const double y = y_of(v);
    out << "<line x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << left + width << "\" y2=\"" << y
        << "\" stroke=\"#ddd\"/>\n<text x=\"" << left - 20 << "\" y=\"" << y + 4 << "\">" << v << "</text>\n";
  }
  out << "<text x=\"" << left << "\" y=\"" << top + height + 16 << "\">0</text>\n<text x=\"" << left + width - 20
      << "\" y=\"" << top + height + 16 << "\">" << (std::ostringstream() << std::setprecision(4) << end).str()
      << "</text>\n<text x=\"" << left + width / 2 - 60 << "\" y=\""
      << top + height + 36 << "\">" << time_label << "</text>\n";
  out << "<text x=\"4\" y=\"" << top - 10 << "\">" << value_label << "</text>\n";
  for (size_t w = 0; w < series.size(); ++w) {
    const char* colour = kColours[w % 8];
    // Each series a staircase, drawn a little apart so that equal stages stay visible.
    const double lift = 3.0 * static_cast<double>(w);
    out << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"2\" points=\"";
    for (size_t i = 0; i < series[w].size(); ++i) {
      const StairStep& step = series[w][i];
      if (i > 0) out << x_of(step.time) << "," << y_of(series[w][i - 1].value) - lift << " ";
      out << x_of(step.time) << "," << y_of(step.value) - lift << " ";
    }
    if (!series[w].empty()) out << x_of(end) << "," << y_of(series[w].back().value) - lift;
    out << "\"/>\n";
    legend_entry(out, legend_left, top + 10 + 18 * static_cast<double>(w), colour,
                 w < worker_names.size() ? worker_names[w] : "worker " + std::to_string(w));
  }
  out << "</svg>\n";
  return out.str();
}

void write_chart(const std::string& path, const std::string& svg) {
  std::ofstream out(path);
  out << svg;
  if (!out.flush()) throw std::runtime_error("cannot write the chart '" + path + "'");
}

}  // namespace minipipe::pipeline
