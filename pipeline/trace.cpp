#include "pipeline/trace.h"

#include <algorithm>
#include <fstream>
#include <functional>
#include <stdexcept>

namespace minipipe::pipeline {

namespace {

std::ofstream open_for_writing(const std::string& path) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write '" + path + "'");
  return out;
}
}  // namespace

TraceSummary summarize(const std::vector<TraceEvent>& events, int workers) {
  if (events.empty()) return {};
  double first = events.front().start_us, last = events.front().end_us, compute = 0;
  for (const TraceEvent& e : events) {
    first = std::min(first, e.start_us);
    last = std::max(last, e.end_us);
    if (is_compute(e.instruction.op)) compute += e.end_us - e.start_us;
  }
  const double makespan = last - first;
  return {makespan, makespan > 0 ? 1.0 - compute / (workers * makespan) : 0.0};
}

std::vector<TraceEvent> to_trace(const SimulationResult& simulated) {
  std::vector<TraceEvent> events;
  for (const TimedInstruction& t : simulated.timeline) events.push_back({t.worker, t.instruction, t.start, t.end, 0});
  return events;
}

namespace {
// "m", or "m.i" when the run was token-sliced (some event names a slice past the first).
std::function<std::string(const Instruction&)> unit_labels(const std::vector<TraceEvent>& events) {
  const bool sliced = std::any_of(events.begin(), events.end(), [](const TraceEvent& e) { return e.instruction.slice > 0; });
  return [sliced](const Instruction& instruction) { return unit_label(instruction, sliced); };
}
}  // namespace

void write_chrome_trace(const std::string& path, const std::vector<TraceEvent>& events) {
  const auto label = unit_labels(events);
  std::ofstream out = open_for_writing(path);
  out << "{\"traceEvents\":[\n";
  bool first = true;
  for (const TraceEvent& e : events) {
    const std::string name = std::string(op_name(e.instruction.op)) +
                             (e.instruction.micro_batch >= 0 ? " " + label(e.instruction) : "");
    out << (first ? "" : ",\n") << "{\"name\":\"" << name << "\",\"cat\":\"" << op_name(e.instruction.op)
        << "\",\"ph\":\"X\",\"pid\":0,\"tid\":" << e.worker << ",\"ts\":" << e.start_us
        << ",\"dur\":" << std::max(0.0, e.end_us - e.start_us) << ",\"args\":{\"micro_batch\":" << e.instruction.micro_batch
        << ",\"slice\":" << e.instruction.slice << ",\"bytes\":" << e.bytes << "}}";
    first = false;
  }
  out << "\n],\"displayTimeUnit\":\"ms\"}\n";
}

void write_svg_timeline(const std::string& path, const std::vector<TraceEvent>& events,
                        const std::vector<std::string>& worker_names, const std::string& title) {
  const int rows = static_cast<int>(worker_names.size());
  const TraceSummary summary = summarize(events, rows);
  const auto label = unit_labels(events);
  double origin = events.empty() ? 0 : events.front().start_us;
  for (const TraceEvent& e : events) origin = std::min(origin, e.start_us);
  size_t longest_name = 0;
  for (const std::string& name : worker_names) longest_name = std::max(longest_name, name.size());
  const double width = 1000, row = 28, left = 10 + 7.0 * static_cast<double>(longest_name), top = 30;
  const double scale = summary.makespan_us > 0 ? width / summary.makespan_us : 1;
  std::ofstream out = open_for_writing(path);
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << left + width + 20 << "\" height=\""
      << top + row * rows + 30 << "\" font-family=\"monospace\" font-size=\"11\">\n";
  out << "<text x=\"" << left << "\" y=\"18\">" << title << " (bubble " << static_cast<int>(summary.bubble_fraction * 1000) / 10.0
      << "%)</text>\n";
  for (int w = 0; w < rows; ++w) out << "<text x=\"4\" y=\"" << top + row * w + 18 << "\">" << worker_names[w] << "</text>\n";
  for (const TraceEvent& e : events) {
    if (!is_compute(e.instruction.op)) continue;
    const bool forward = e.instruction.op == Op::Forward, weight = e.instruction.op == Op::BackwardWeight;
    const double x = left + (e.start_us - origin) * scale, w = std::max(1.0, (e.end_us - e.start_us) * scale);
    out << "<rect x=\"" << x << "\" y=\"" << top + row * e.worker << "\" width=\"" << w << "\" height=\"" << row - 4
        << "\" fill=\"" << (forward ? "#4e79a7" : weight ? "#59a14f" : "#f28e2b") << "\" stroke=\"white\"/>\n";
    if (w > 14)
      out << "<text x=\"" << x + 3 << "\" y=\"" << top + row * e.worker + 17 << "\" fill=\"white\">" << (forward ? "F" : weight ? "W" : "B")
          << label(e.instruction) << "</text>\n";
  }
  out << "</svg>\n";
}

}  // namespace minipipe::pipeline
