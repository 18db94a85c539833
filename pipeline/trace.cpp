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
        << ",\"slice\":" << e.instruction.slice << ",\"chunk\":" << e.instruction.chunk << ",\"bytes\":" << e.bytes;
    if (e.instruction.version >= 0) out << ",\"version\":" << e.instruction.version;  // PipeDream's weight version
    out << "}}";
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
    if (args.object.count("version"))
      instruction.version = static_cast<int>(std::clamp<int64_t>(member(args, "version", Kind::Number).number, -1, 1 << 30));
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
// A monospace character at font-size 11 is 0.6 em wide: a label is drawn only inside a box
// at least this many pixels per character wider than its 3-pixel margins.
constexpr double kCharacterWidth = 6.7;

// The fill of an instruction's box: F blue, B orange, W green, each darker on a stage's
// second and later chunks (interleaved and V placements).
const char* box_colour(Op op, int chunk) {
  const bool later_chunk = chunk > 0;
  if (op == Op::Forward) return later_chunk ? "#284b73" : "#4e79a7";
  if (op == Op::BackwardWeight) return later_chunk ? "#2f6128" : "#59a14f";
  return later_chunk ? "#a85a0c" : "#f28e2b";
}

// Round steps for an axis `span` long with about `ticks` ticks: 1, 2 or 5 times a power of 10.
double tick_step(double span, int ticks) {
  const double raw = span / ticks, power = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double step : {1.0, 2.0, 5.0, 10.0})
    if (step * power >= raw) return step * power;
  return 10 * power;
}

// One or two timelines on one time axis, a row per worker: `events` fill each row, or its top
// half when `predicted` is given too, drawn below as outlines. Under the rows: the time axis
// (ms of a measured run, or the simulator's cost units) and a legend.
std::string svg(const std::vector<TraceEvent>& events, const std::vector<TraceEvent>* predicted,
                const std::vector<std::string>& worker_names, const std::string& title, TimeAxis axis) {
  const int rows = static_cast<int>(worker_names.size());
  const TraceSummary summary = summarize(events, rows);
  double makespan = summary.makespan_us;
  if (predicted) makespan = std::max(makespan, summarize(*predicted, rows).makespan_us);
  size_t longest_name = 0;
  for (const std::string& name : worker_names) longest_name = std::max(longest_name, name.size());
  const double width = 1000, row = predicted ? 44 : 28, left = 10 + 7.0 * static_cast<double>(longest_name), top = 30;
  const double scale = makespan > 0 ? width / makespan : 1;
  const double axis_top = top + row * rows + (predicted ? 22 : 4), legend_top = axis_top + 34;
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << left + width + 20 << "\" height=\""
      << legend_top + 22 << "\" font-family=\"monospace\" font-size=\"11\">\n";
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
      const char* colour = box_colour(e.instruction.op, e.instruction.chunk);
      const double x = left + (e.start_us - origin) * scale, w = std::max(1.0, (e.end_us - e.start_us) * scale);
      const double y = top + row * e.worker + offset;
      out << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << w << "\" height=\"" << height << "\" "
          << (outline ? std::string("fill=\"white\" stroke=\"") + colour + "\" stroke-width=\"1.5\""
                      : std::string("fill=\"") + colour + "\" stroke=\"white\"")
          << "/>\n";
      // The unit, and under PipeDream the weight version it ran with where the box has room.
      auto fits = [w](const std::string& text) { return 6 + kCharacterWidth * static_cast<double>(text.size()) <= w; };
      std::string text = compute_letter(e.instruction.op) + label(e.instruction);
      if (e.instruction.version >= 0 && fits(text + "/v" + std::to_string(e.instruction.version)))
        text += "/v" + std::to_string(e.instruction.version);
      if (fits(text))
        out << "<text x=\"" << x + 3 << "\" y=\"" << y + std::min(17.0, height - 3) << "\" fill=\"" << (outline ? colour : "white")
            << "\">" << text << "</text>\n";
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
  // The time axis: a tick every round step, labelled in ms (events are in microseconds) or
  // in the simulator's cost units.
  const double unit = axis == TimeAxis::Milliseconds ? 1e3 : 1.0;
  const char* unit_name = axis == TimeAxis::Milliseconds ? " ms" : "";
  out << "<line x1=\"" << left << "\" y1=\"" << axis_top << "\" x2=\"" << left + width << "\" y2=\"" << axis_top
      << "\" stroke=\"black\"/>\n";
  const double span = makespan / unit, step = span > 0 ? tick_step(span, 8) : 1;
  for (int i = 0; span > 0 && i * step <= span * (1 + 1e-9); ++i) {
    const double x = left + i * step * unit * scale;
    std::ostringstream tick;
    tick << i * step << (i == 0 ? unit_name : "");
    out << "<line x1=\"" << x << "\" y1=\"" << axis_top << "\" x2=\"" << x << "\" y2=\"" << axis_top + 4
        << "\" stroke=\"black\"/><text x=\"" << x << "\" y=\"" << axis_top + 16 << "\" text-anchor=\"middle\">"
        << tick.str() << "</text>\n";
  }
  out << "<text x=\"" << left + width << "\" y=\"" << axis_top + 28 << "\" text-anchor=\"end\">time"
      << (axis == TimeAxis::Milliseconds ? " (ms)" : " (cost units)") << "</text>\n";
  // The legend: what each colour means; white between boxes is idle time, the bubble.
  bool chunks = false, weights = false, versions = false;
  for (const TraceEvent& e : events) {
    chunks = chunks || e.instruction.chunk > 0;
    weights = weights || e.instruction.op == Op::BackwardWeight;
    versions = versions || (is_compute(e.instruction.op) && e.instruction.version >= 0);
  }
  std::vector<std::pair<const char*, std::string>> entries = {
      {box_colour(Op::Forward, 0), "F forward"},
      {box_colour(Op::Backward, 0), weights ? "B backward, input part" : "B backward"}};
  if (weights) entries.push_back({box_colour(Op::BackwardWeight, 0), "W weight gradients"});
  if (chunks) entries.push_back({box_colour(Op::Forward, 1), "darker: later chunks"});
  entries.push_back({"white", "white: idle (the bubble)"});
  if (versions) entries.push_back({nullptr, "F3/v2: micro-batch 3 with weight version 2"});
  double x = left;
  for (const auto& [colour, text] : entries) {
    if (colour)
      out << "<rect x=\"" << x << "\" y=\"" << legend_top << "\" width=\"12\" height=\"12\" fill=\"" << colour
          << "\" stroke=\"black\"/>";
    out << "<text x=\"" << x + 16 << "\" y=\"" << legend_top + 10 << "\">" << text << "</text>\n";
    x += 16 + kCharacterWidth * static_cast<double>(text.size()) + 18;
  }
  out << "</svg>\n";
  return out.str();
}
}  // namespace

std::string timeline_svg(const std::vector<TraceEvent>& events, const std::vector<std::string>& worker_names,
                         const std::string& title, TimeAxis axis) {
  return svg(events, nullptr, worker_names, title, axis);
}

std::string comparison_svg(const std::vector<TraceEvent>& measured, const std::vector<TraceEvent>& predicted,
                           const std::vector<std::string>& worker_names, const std::string& title) {
  return svg(measured, &predicted, worker_names, title, TimeAxis::Milliseconds);
}

void write_svg_timeline(const std::string& path, const std::vector<TraceEvent>& events,
                        const std::vector<std::string>& worker_names, const std::string& title, TimeAxis axis) {
  open_for_writing(path) << timeline_svg(events, worker_names, title, axis);
}

void write_svg_comparison(const std::string& path, const std::vector<TraceEvent>& measured,
                          const std::vector<TraceEvent>& predicted, const std::vector<std::string>& worker_names,
                          const std::string& title) {
  open_for_writing(path) << comparison_svg(measured, predicted, worker_names, title);
}

}  // namespace minipipe::pipeline
