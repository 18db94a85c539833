// `minipipe explain RUN.jsonl TRACE.json`: where each stage's time went in the traced step of
// a run: computing, waiting for the previous stage's activations, waiting for the next
// stage's gradients, idle while the pipeline fills and flushes, and the rest.
#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "commands.h"
#include "pipeline/charts.h"
#include "pipeline/simulator.h"
#include "pipeline/trace.h"
#include "run_log.h"
#include "training_log.h"

namespace minipipe::cli {

int explain(const ExplainOptions& o) {
  const RunLog run = read_run_log(o.log);
  const std::vector<pipeline::TraceEvent> events = pipeline::read_chrome_trace(o.trace);
  const int workers = pipeline::workers_in(events);
  const std::vector<pipeline::WorkerTime> times = pipeline::where_time_went(events, workers);
  const pipeline::TraceSummary summary = pipeline::summarize(events, workers);
  const double formula = run.formula_bubble;
  const std::string row_name = workers == run.stages ? "stage" : "worker";
  if (!o.memory_chart.empty()) {
    pipeline::write_chart(o.memory_chart,
                          pipeline::staircase_svg(pipeline::memory_over_time(events, workers), worker_names(run, workers),
                                                  summary.makespan_us / 1e3,
                                                  "memory each " + row_name + " held over the traced step (measured), " +
                                                      run.schedule + ", " + std::to_string(run.micro_batches) + " micro-batches",
                                                  "MiB held", "time (ms)"));
  }
  if (o.json) {
    std::vector<double> compute, activations, gradients, flush, other;
    for (const pipeline::WorkerTime& t : times) {
      compute.push_back(t.compute_us / 1e3), activations.push_back(t.waiting_activation_us / 1e3);
      gradients.push_back(t.waiting_gradient_us / 1e3), flush.push_back(t.idle_at_flush_us / 1e3), other.push_back(t.other_us / 1e3);
    }
    std::printf("%s\n", JsonObject().add("schedule", run.schedule).add("stages", static_cast<int64_t>(run.stages))
                            .add("micro_batches", static_cast<int64_t>(run.micro_batches))
                            .add("step_ms", summary.makespan_us / 1e3)
                            .add_raw("compute_ms", json_list(compute)).add_raw("waiting_for_activations_ms", json_list(activations))
                            .add_raw("waiting_for_gradients_ms", json_list(gradients)).add_raw("idle_at_fill_and_flush_ms", json_list(flush))
                            .add_raw("other_ms", json_list(other))
                            .add("measured_bubble_fraction", summary.bubble_fraction).add("formula_bubble_fraction", formula)
                            .str().c_str());
    return 0;
  }
  const double step = summary.makespan_us;
  std::printf("%s, %d stages, %d micro-batches%s: the traced step took %.2f ms\n\n", run.schedule.c_str(), run.stages,
              run.micro_batches, run.token_slices > 1 ? (" x " + std::to_string(run.token_slices) + " token slices").c_str() : "",
              step / 1e3);
  std::printf("%-9s %18s %18s %18s %18s %18s\n", row_name.c_str(), "compute", "waiting for", "waiting for", "idle at fill", "other");
  std::printf("%-9s %18s %18s %18s %18s %18s\n", "", "", "activations", "gradients", "and flush", "(sends, host)");
  auto cell = [step](double us) {
    char text[32];
    std::snprintf(text, sizeof text, "%8.2f ms %5.1f%%", us / 1e3, step > 0 ? 100 * us / step : 0.0);
    return std::string(text);
  };
  for (int w = 0; w < workers; ++w) {
    const pipeline::WorkerTime& t = times[w];
    std::printf("%-9s %18s %18s %18s %18s %18s\n", (row_name + " " + std::to_string(w)).c_str(), cell(t.compute_us).c_str(),
                cell(t.waiting_activation_us).c_str(), cell(t.waiting_gradient_us).c_str(), cell(t.idle_at_flush_us).c_str(),
                cell(t.other_us).c_str());
  }
  std::printf("\nbubble: measured %.3f (the share of stage time not computing), formula %s = %.3f\n", summary.bubble_fraction,
              bubble_formula(run), formula);
  return 0;
}

}  // namespace minipipe::cli
