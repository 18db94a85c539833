#include "pipeline/trace.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <iomanip>
#include <sstream>
#include <stdexcept>

#include "nn/json_reader.h"

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

int workers_in(const std::vector<TraceEvent>& events) {
  int workers = 0;
  for (const TraceEvent& e : events) workers = std::max(workers, e.worker + 1);
  return workers;
}

std::vector<WorkerTime> where_time_went(const std::vector<TraceEvent>& events, int workers) {
  std::vector<WorkerTime> out(workers);
  if (events.empty()) return out;
  double first = events.front().start_us, last = events.front().end_us;
  for (const TraceEvent& e : events) first = std::min(first, e.start_us), last = std::max(last, e.end_us);
  std::vector<double> busy_from(workers, last), busy_to(workers, first);
  for (const TraceEvent& e : events) {
    if (e.worker < 0 || e.worker >= workers)
      throw std::invalid_argument("a trace event of worker " + std::to_string(e.worker) + " in a run of " + std::to_string(workers));
    WorkerTime& t = out[e.worker];
    const double took = e.end_us - e.start_us;
    if (is_compute(e.instruction.op)) t.compute_us += took;
    else if (e.instruction.op == Op::ReceiveActivation) t.waiting_activation_us += took;
    else if (e.instruction.op == Op::ReceiveGradient) t.waiting_gradient_us += took;
    busy_from[e.worker] = std::min(busy_from[e.worker], e.start_us);
    busy_to[e.worker] = std::max(busy_to[e.worker], e.end_us);
  }
  for (int w = 0; w < workers; ++w) {
    WorkerTime& t = out[w];
    t.idle_at_flush_us = busy_to[w] >= busy_from[w] ? (busy_from[w] - first) + (last - busy_to[w]) : last - first;
    t.other_us = std::max(0.0, (last - first) - t.compute_us - t.waiting_activation_us - t.waiting_gradient_us - t.idle_at_flush_us);
  }
  return out;
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
  out << std::fixed << std::setprecision(3);  // microseconds to the nanosecond, however long the run
  out << "{\"traceEvents\":[\n";
  bool first = true;
  for (const TraceEvent& e : events) {
    const std::string name = std::string(op_name(e.instruction.op)) +
                             (e.instruction.micro_batch >= 0 ? " " + label(e.instruction) : "");
    out << (first ? "" : ",\n") << "{\"name\":\"" << name << "\",\"cat\":\"" << op_name(e.instruction.op)
        << "\",\"ph\":\"X\",\"pid\":0,\"tid\":" << e.worker << ",\"ts\":" << e.start_us
        << ",\"dur\":" << std::max(0.0, e.end_us - e.start_us) << ",\"args\":{\"micro_batch\":" << e.instruction.micro_batch
        << ",\"slice\":" << e.instruction.slice << ",\"chunk\":" << e.instruction.chunk << ",\"bytes\":" << e.bytes << "}}";
    first = false;
  }
  out << "\n],\"displayTimeUnit\":\"ms\"}\n";
}

namespace {
Op op_named(const std::string& name) {
  for (int o = 0; o <= static_cast<int>(Op::AllReduce); ++o)
    if (name == op_name(static_cast<Op>(o))) return static_cast<Op>(o);
  throw std::invalid_argument("no instruction is called " + nn::printable_quoted(name));
}

const nn::JsonValue& member(const nn::JsonValue& object, const std::string& key, nn::JsonValue::Kind kind) {
  if (object.kind != nn::JsonValue::Kind::Object) throw std::invalid_argument("an event is " + std::string(object.kind_name()));
  const auto it = object.object.find(key);
  if (it == object.object.end()) throw std::invalid_argument("an event has no \"" + key + "\"");
  if (it->second.kind != kind) throw std::invalid_argument("\"" + key + "\" is " + it->second.kind_name());
  return it->second;
}
}  // namespace

std::vector<TraceEvent> parse_chrome_trace(const std::string& text) {
  using Kind = nn::JsonValue::Kind;
  const nn::JsonValue document = nn::parse_json(text, true);
  if (document.kind != Kind::Object) throw std::invalid_argument("the file is " + std::string(document.kind_name()));
  std::vector<TraceEvent> events;
  for (const nn::JsonValue& e : member(document, "traceEvents", Kind::Array).array) {
    const nn::JsonValue& args = member(e, "args", Kind::Object);
    Instruction instruction{op_named(member(e, "cat", Kind::String).string)};
    instruction.micro_batch = static_cast<int>(std::clamp<int64_t>(member(args, "micro_batch", Kind::Number).number, -1, 1 << 30));
    instruction.slice = static_cast<int>(std::clamp<int64_t>(member(args, "slice", Kind::Number).number, 0, 1 << 30));
    if (args.object.count("chunk"))
      instruction.chunk = static_cast<int>(std::clamp<int64_t>(member(args, "chunk", Kind::Number).number, 0, 1 << 30));
    const int64_t worker = member(e, "tid", Kind::Number).number;
    const double start = member(e, "ts", Kind::Number).real, duration = member(e, "dur", Kind::Number).real;
    if (worker < 0 || worker > 4096 || !std::isfinite(start) || !std::isfinite(duration) || duration < 0 ||
        !std::isfinite(start + duration))
      throw std::invalid_argument("an event has a worker or times out of range");
    events.push_back({static_cast<int>(worker), instruction, start, start + duration, member(args, "bytes", Kind::Number).number});
  }
  if (events.empty()) throw std::invalid_argument("it has no events");
  return events;
}

std::vector<TraceEvent> read_chrome_trace(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read the trace '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return parse_chrome_trace(text.str());
  } catch (const std::exception& e) {
    throw std::runtime_error("'" + path + "' is not a trace of `minipipe train --trace`: " + e.what());
  }
}

namespace {
// One or two timelines on one time axis, a row per worker: `events` fill each row, or its top
// half when `predicted` is given too, drawn below as outlines.
std::string svg(const std::vector<TraceEvent>& events, const std::vector<TraceEvent>* predicted,
                const std::vector<std::string>& worker_names, const std::string& title) {
  const int rows = static_cast<int>(worker_names.size());
  const TraceSummary summary = summarize(events, rows);
  double makespan = summary.makespan_us;
  if (predicted) makespan = std::max(makespan, summarize(*predicted, rows).makespan_us);
  size_t longest_name = 0;
  for (const std::string& name : worker_names) longest_name = std::max(longest_name, name.size());
  const double width = 1000, row = predicted ? 44 : 28, left = 10 + 7.0 * static_cast<double>(longest_name), top = 30;
  const double scale = makespan > 0 ? width / makespan : 1;
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << left + width + 20 << "\" height=\""
      << top + row * rows + 30 << "\" font-family=\"monospace\" font-size=\"11\">\n";
  auto percent = [](double fraction) { return static_cast<int>(fraction * 1000) / 10.0; };
  out << "<text x=\"" << left << "\" y=\"18\">" << title << " (bubble " << percent(summary.bubble_fraction) << "%";
  if (predicted) out << ", predicted " << percent(summarize(*predicted, rows).bubble_fraction) << "%";
  out << ")</text>\n";
  for (int w = 0; w < rows; ++w) out << "<text x=\"4\" y=\"" << top + row * w + 18 << "\">" << worker_names[w] << "</text>\n";
  // Each band: its events' compute instructions, F blue, B orange, W green.
  auto band = [&](const std::vector<TraceEvent>& band_events, double offset, double height, bool outline) {
    const auto label = unit_labels(band_events);
    double origin = band_events.empty() ? 0 : band_events.front().start_us;
    for (const TraceEvent& e : band_events) origin = std::min(origin, e.start_us);
    for (const TraceEvent& e : band_events) {
      if (!is_compute(e.instruction.op)) continue;
      const bool forward = e.instruction.op == Op::Forward, weight = e.instruction.op == Op::BackwardWeight;
      const char* colour = forward ? "#4e79a7" : weight ? "#59a14f" : "#f28e2b";
      const double x = left + (e.start_us - origin) * scale, w = std::max(1.0, (e.end_us - e.start_us) * scale);
      const double y = top + row * e.worker + offset;
      out << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << w << "\" height=\"" << height << "\" "
          << (outline ? std::string("fill=\"white\" stroke=\"") + colour + "\" stroke-width=\"1.5\""
                      : std::string("fill=\"") + colour + "\" stroke=\"white\"")
          << "/>\n";
      if (w > 14)
        out << "<text x=\"" << x + 3 << "\" y=\"" << y + std::min(17.0, height - 3) << "\" fill=\"" << (outline ? colour : "white")
            << "\">" << compute_letter(e.instruction.op) << label(e.instruction) << "</text>\n";
    }
  };
  if (!predicted) {
    band(events, 0, row - 4, false);
  } else {
    band(events, 0, 20, false);
    band(*predicted, 21, 19, true);
    out << "<text x=\"" << left << "\" y=\"" << top + row * rows + 16
        << "\">filled: measured; outlined: predicted from the measured per-stage costs</text>\n";
  }
  out << "</svg>\n";
  return out.str();
}
}  // namespace

std::string timeline_svg(const std::vector<TraceEvent>& events, const std::vector<std::string>& worker_names,
                         const std::string& title) {
  return svg(events, nullptr, worker_names, title);
}

std::string comparison_svg(const std::vector<TraceEvent>& measured, const std::vector<TraceEvent>& predicted,
                           const std::vector<std::string>& worker_names, const std::string& title) {
  return svg(measured, &predicted, worker_names, title);
}

void write_svg_timeline(const std::string& path, const std::vector<TraceEvent>& events,
                        const std::vector<std::string>& worker_names, const std::string& title) {
  open_for_writing(path) << timeline_svg(events, worker_names, title);
}

void write_svg_comparison(const std::string& path, const std::vector<TraceEvent>& measured,
                          const std::vector<TraceEvent>& predicted, const std::vector<std::string>& worker_names,
                          const std::string& title) {
  open_for_writing(path) << comparison_svg(measured, predicted, worker_names, title);
}

}  // namespace minipipe::pipeline
