// `minipipe report RUN.jsonl [TRACE.json] -o report.html`: one self-contained page about a run
// (HTML and inline SVG; no script, nothing fetched), for a course: the configuration, the loss
// curve, the measured timeline over the one the simulator predicts from the run's own
// per-stage costs, the bubble measured, predicted and by formula, where each stage's time
// went, and each stage's peak memory beside what the schedule keeps in flight.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "commands.h"
#include "pipeline/charts.h"
#include "pipeline/prediction.h"
#include "pipeline/schedule.h"
#include "pipeline/simulator.h"
#include "pipeline/trace.h"
#include "run_log.h"
#include "training_log.h"

namespace minipipe::cli {

namespace {

using Kind = nn::JsonValue::Kind;

std::string escaped(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else if (c < 0x20 || c == 0x7F) out += ' ';
    else out += static_cast<char>(c);
  }
  return out;
}

// A JSON value as a table cell.
std::string cell(const nn::JsonValue& v) {
  switch (v.kind) {
    case Kind::String: return escaped(v.string);
    case Kind::Number: return v.real == std::floor(v.real) && std::fabs(v.real) < 1e15 ? format_value("%.0f", v.real) : format_value("%.6g", v.real);
    case Kind::Boolean: return v.boolean ? "true" : "false";
    case Kind::Null: return "&ndash;";
    case Kind::Array: {
      std::string out = "[";
      for (size_t i = 0; i < v.array.size() && i < 64; ++i) out += (i ? ", " : "") + cell(v.array[i]);
      return out + (v.array.size() > 64 ? ", ...]" : "]");
    }
    case Kind::Object: return "{...}";
  }
  return "";
}

std::string configuration_table(const RunLog& run) {
  std::string rows;
  for (const auto& [key, value] : run.summary.object) {
    if (key == "event") continue;
    if (value.kind != Kind::Object) {
      rows += "<tr><th>" + escaped(key) + "</th><td>" + cell(value) + "</td></tr>\n";
      continue;
    }
    for (const auto& [inner, v] : value.object)
      rows += "<tr><th>" + escaped(key + "." + inner) + "</th><td>" + cell(v) + "</td></tr>\n";
  }
  return "<table class=\"config\">\n" + rows + "</table>\n";
}

// Training losses as a line, validation losses as dots, on one pair of axes.
std::string loss_curve(const RunLog& run) {
  if (run.losses.empty()) return "<p>The log has no step losses.</p>\n";
  double low = run.losses[0].second, high = low;
  int64_t first = run.losses.front().first, last = run.losses.back().first;
  for (const auto& points : {run.losses, run.validation_losses})
    for (const auto& [step, loss] : points)
      low = std::min(low, loss), high = std::max(high, loss), first = std::min(first, step), last = std::max(last, step);
  if (high <= low) high = low + 1;
  if (last <= first) last = first + 1;
  const double width = 640, height = 240, left = 60, top = 10;
  auto x = [&](int64_t step) { return left + width * static_cast<double>(step - first) / static_cast<double>(last - first); };
  auto y = [&](double loss) { return top + height * (high - loss) / (high - low); };
  std::ostringstream svg;
  svg << "<svg id=\"loss-curve\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << left + width + 20 << "\" height=\""
      << top + height + 40 << "\" font-family=\"monospace\" font-size=\"11\">\n";
  svg << "<line x1=\"" << left << "\" y1=\"" << top + height << "\" x2=\"" << left + width << "\" y2=\"" << top + height
      << "\" stroke=\"black\"/><line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left << "\" y2=\"" << top + height
      << "\" stroke=\"black\"/>\n";
  svg << "<text x=\"4\" y=\"" << top + 10 << "\">" << format_value("%.3f", high) << "</text><text x=\"4\" y=\"" << top + height
      << "\">" << format_value("%.3f", low) << "</text>\n";
  svg << "<text x=\"" << left << "\" y=\"" << top + height + 16 << "\">step " << first << "</text><text x=\"" << left + width - 60
      << "\" y=\"" << top + height + 16 << "\">step " << last << "</text>\n";
  svg << "<polyline fill=\"none\" stroke=\"#4e79a7\" stroke-width=\"1.5\" points=\"";
  for (const auto& [step, loss] : run.losses) svg << x(step) << "," << y(loss) << " ";
  svg << "\"/>\n";
  for (const auto& [step, loss] : run.validation_losses)
    svg << "<circle cx=\"" << x(step) << "\" cy=\"" << y(loss) << "\" r=\"4\" fill=\"#f28e2b\"/>\n";
  svg << "<text x=\"" << left + 10 << "\" y=\"" << top + height + 34
      << "\" fill=\"#4e79a7\">training loss</text><text x=\"" << left + 130 << "\" y=\"" << top + height + 34
      << "\" fill=\"#f28e2b\">validation loss</text>\n</svg>\n";
  return svg.str();
}

// The timeline, its prediction, the bubble and where the time went.
std::string timeline_section(const RunLog& run, const std::vector<pipeline::TraceEvent>& measured) {
  if (measured.empty()) return "<p>No trace given: train with <code>--trace FILE</code> and pass it to see the timeline.</p>\n";
  const int workers = pipeline::workers_in(measured);
  const std::vector<std::string> names = worker_names(run, workers);
  const pipeline::TraceSummary was = pipeline::summarize(measured, workers);
  const double formula = run.formula_bubble;
  std::string out;
  std::string predicted_step = "&ndash;", predicted_bubble = "&ndash;";
  if (run.asynchronous || workers != run.stages) {
    out += "<p>Measured timeline (no prediction: the simulator predicts one synchronous step of one pipeline).</p>\n";
    out += "<div id=\"timeline\">" + pipeline::timeline_svg(measured, names, "measured") + "</div>\n";
  } else {
    const pipeline::Schedule schedule = pipeline::build_schedule(run.schedule_spec());
    const pipeline::CostModel costs = pipeline::costs_from_trace(measured, schedule);
    const std::vector<pipeline::TraceEvent> predicted = pipeline::to_trace(pipeline::simulate(schedule, costs));
    const pipeline::TraceSummary would = pipeline::summarize(predicted, workers);
    predicted_step = format_value("%.2f ms", would.makespan_us / 1e3) +
                     format_value(" (%+.1f%%)", was.makespan_us > 0 ? 100 * (would.makespan_us / was.makespan_us - 1) : 0.0);
    predicted_bubble = format_value("%.3f", would.bubble_fraction);
    out += "<p>The traced step: each row's upper half as measured, its lower half as the simulator predicts it from each "
           "stage's median forward and backward time in this trace.</p>\n";
    out += "<div id=\"timeline\">" +
           pipeline::comparison_svg(measured, predicted, names, escaped(run.schedule) + ": measured and predicted") + "</div>\n";
  }
  out += "<table class=\"numbers\"><tr><th></th><th>measured</th><th>predicted</th><th>formula</th></tr>\n";
  out += "<tr><th>step time</th><td>" + format_value("%.2f ms", was.makespan_us / 1e3) + "</td><td>" + predicted_step + "</td><td></td></tr>\n";
  out += "<tr><th>bubble</th><td>" + format_value("%.3f", was.bubble_fraction) + "</td><td>" + predicted_bubble + "</td><td>" +
         format_value("%.3f", formula) + (run.asynchronous ? "" : std::string(" = ") + bubble_formula(run)) +
         "</td></tr>\n</table>\n";
  out += "<h3>Where each stage's time went</h3>\n<table class=\"numbers\"><tr><th></th><th>compute</th><th>waiting for "
         "activations</th><th>waiting for gradients</th><th>idle at fill and flush</th><th>other</th></tr>\n";
  const std::vector<pipeline::WorkerTime> times = pipeline::where_time_went(measured, workers);
  auto share = [&](double us) { return format_value("%.2f ms", us / 1e3) + format_value(" (%.0f%%)", was.makespan_us > 0 ? 100 * us / was.makespan_us : 0.0); };
  for (int w = 0; w < workers; ++w)
    out += "<tr><th>" + names[w] + "</th><td>" + share(times[w].compute_us) + "</td><td>" + share(times[w].waiting_activation_us) +
           "</td><td>" + share(times[w].waiting_gradient_us) + "</td><td>" + share(times[w].idle_at_flush_us) + "</td><td>" +
           share(times[w].other_us) + "</td></tr>\n";
  return out + "</table>\n";
}

// Each stage's peak bytes beside the micro-batches the schedule keeps in flight there: GPipe
// all M, 1F1B with a flush at most K - s (the flush variant of PipeDream-2BW's paper); with a
// trace, the bytes each stage held over the traced step beside the units the simulated
// schedule keeps in flight over time.
std::string memory_section(const RunLog& run, const std::vector<pipeline::TraceEvent>& measured) {
  const nn::JsonValue& peaks = summary_field(run, {"pipeline", "peak_bytes_per_stage"});
  if (peaks.kind != Kind::Array || peaks.array.empty()) return "<p>The summary has no per-stage peak memory.</p>\n";
  std::vector<int> in_flight;
  std::string formula = "from the simulated schedule", charts;
  if (!measured.empty()) {
    const int workers = pipeline::workers_in(measured);
    charts += "<div id=\"measured-memory\">" +
              pipeline::staircase_svg(pipeline::memory_over_time(measured, workers), worker_names(run, workers),
                                      pipeline::summarize(measured, workers).makespan_us / 1e3,
                                      "memory each stage held over the traced step (measured)", "MiB held", "time (ms)") +
              "</div>\n";
  }
  if (!run.asynchronous) {
    const pipeline::Schedule schedule = pipeline::build_schedule(run.schedule_spec());
    const pipeline::SimulationResult simulated = pipeline::simulate(schedule, pipeline::CostModel::uniform(run.stages, 1, 2));
    in_flight = simulated.peak_in_flight;
    if (!measured.empty())
      charts += "<div id=\"predicted-memory\">" +
                pipeline::staircase_svg(pipeline::in_flight_over_time(schedule, simulated), schedule.worker_names(),
                                        simulated.makespan, "units in flight over the step (simulated, F = 1, B = 2)",
                                        "units in flight") +
                "</div>\n";
    if (run.schedule == "gpipe") formula = "GPipe: all M = " + std::to_string(run.micro_batches);
    if (run.schedule == "1f1b") formula = "1F1B: min(K - s, M)";
  }
  std::string out = "<table class=\"numbers\"><tr><th></th><th>peak memory</th><th>units in flight at most (" + escaped(formula) +
                    ")</th><th>peak per unit in flight</th></tr>\n";
  for (size_t s = 0; s < peaks.array.size(); ++s) {
    const double bytes = peaks.array[s].real;
    const int units = s < in_flight.size() ? in_flight[s] : 0;
    out += "<tr><th>stage " + std::to_string(s) + "</th><td>" + format_value("%.2f MiB", bytes / (1 << 20)) + "</td><td>" +
           (units ? std::to_string(units) : "&ndash;") + "</td><td>" +
           (units ? format_value("%.2f MiB", bytes / units / (1 << 20)) : "&ndash;") + "</td></tr>\n";
  }
  return out + "</table>\n<p>Peak memory is what the stage's thread allocated and still held at its peak: the activations "
               "kept for backwards, the weights' gradients and temporaries (not the parameters or the optimizer's "
               "state). It grows with the units in flight, but the gradients make it more than proportional.</p>\n" +
               charts;
}

// The course's capstone score (docs/course/11-build-a-schedule.md): the median throughput of
// the steps after the first (which pays for first-touch allocation) when every stage's peak
// is within the budget, and 0 when one is over it; one line that says which.
std::string capstone_score(const RunLog& run, double budget_mib) {
  const nn::JsonValue& peaks = summary_field(run, {"pipeline", "peak_bytes_per_stage"});
  if (peaks.kind != Kind::Array || peaks.array.empty())
    throw std::invalid_argument("--memory-budget-mib: the run logged no per-stage peak memory; score a pipelined run "
                                "(train --stages K --log-json FILE)");
  if (run.throughputs.size() < 2)
    throw std::invalid_argument("--memory-budget-mib: the run logged fewer than two steps' throughput; train at least 2 steps");
  std::vector<double> rates(run.throughputs.begin() + 1, run.throughputs.end());
  std::nth_element(rates.begin(), rates.begin() + static_cast<std::ptrdiff_t>(rates.size() / 2), rates.end());
  const double median = rates[rates.size() / 2];
  std::string peaks_text, over;
  for (size_t s = 0; s < peaks.array.size(); ++s) {
    const double mib = peaks.array[s].real / (1 << 20);
    peaks_text += (s ? ", " : "") + format_value("%.2f", mib);
    if (mib > budget_mib && over.empty()) over = "stage " + std::to_string(s) + format_value(" peaked at %.2f MiB", mib);
  }
  if (!over.empty()) return "score 0: " + over + format_value(", over the %g MiB budget", budget_mib) + " (peaks " + peaks_text + " MiB)";
  return format_value("score %.0f ", median) + run.throughput_unit + " (median of steps 2 on), every stage within the " +
         format_value("%g MiB budget", budget_mib) + " (peaks " + peaks_text + " MiB)";
}

}  // namespace

int report(const ReportOptions& o) {
  const RunLog run = read_run_log(o.log);
  const nn::JsonValue& model = summary_field(run, {"model"});
  const std::string title = "minipipe run: " + (model.kind == Kind::String ? escaped(model.string) : std::string("model")) + ", " +
                            escaped(run.schedule) + ", " + std::to_string(run.stages) + " stages, " +
                            std::to_string(run.micro_batches) + " micro-batches";
  std::string page = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + title + "</title>\n<style>"
                     "body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}"
                     "table{border-collapse:collapse;margin:0.5em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}"
                     "td{font-family:monospace}</style></head>\n<body>\n<h1>" + title + "</h1>\n";
  if (o.memory_budget_mib > 0) {
    const std::string score = capstone_score(run, o.memory_budget_mib);
    std::printf("%s\n", score.c_str());
    page += "<h2>Score</h2>\n<p id=\"score\">" + escaped(score) + "</p>\n";
  }
  page += "<h2>Loss</h2>\n" + loss_curve(run);
  const std::vector<pipeline::TraceEvent> measured =
      o.trace.empty() ? std::vector<pipeline::TraceEvent>{} : pipeline::read_chrome_trace(o.trace);
  page += "<h2>Timeline of the traced step</h2>\n" + timeline_section(run, measured);
  page += "<h2>Memory per stage</h2>\n" + memory_section(run, measured);
  page += "<h2>Configuration</h2>\n" + configuration_table(run);
  page += "<p>Made by <code>minipipe report</code> from " + escaped(o.log) + (o.trace.empty() ? "" : " and " + escaped(o.trace)) +
          ".</p>\n</body></html>\n";
  std::ofstream out(o.output);
  if (!(out << page)) throw std::runtime_error("cannot write '" + o.output + "'");
  std::printf("wrote %s\n", o.output.c_str());
  return 0;
}

}  // namespace minipipe::cli
