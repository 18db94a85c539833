// Throughput of PipeDream's asynchronous pipeline against the flushing schedules, on CPU
// stages (one thread each) of a balanced stack of Linear + GELU layers. Every row trains the
// same micro-batches (--micro-batch rows each, --units of them per timing) with SGD:
//   gpipe, 1f1b      M micro-batches per mini-batch, an update and a flush after each;
//   pipedream stash, vertical-sync, none   one update per micro-batch, no flush until the end;
//   pipedream 2bw    an update per M micro-batches, no flush until the end;
//   pipedream stash, K replicas   one stage on K replicas (data parallelism, section 3.1):
//                    round-robin micro-batches, gradients averaged before each update.
// Each row is timed with K = 1 and with K workers (the same work on one stage is ordinary
// training); speedup = K-worker rate / 1-worker rate, ideal = what the bubble allows:
// K M / (M + K - 1) for a flush per mini-batch, K U / (U + K - 1) for U streamed micro-batches
// (K for the replicas, which have no bubble).
// Median of --repeats timings; ratios come from the same run.
//
//   pipedream_benchmark [--stages 2] [--width 384] [--layers 8] [--micro-batch 128] [--micro-batches 8]
//                       [--units 64] [--repeats 5] [--only stash] [--json FILE]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "benchmark_stats.h"
#include "nn/layers.h"
#include "nn/losses.h"
#include "nn/optim/optimizer.h"
#include "pipeline/executor.h"
#include "tensor/factories.h"

using namespace minipipe;

namespace {

struct Config {
  std::string schedule, weights;  // weights: empty for the synchronous schedules
  int micro_batches_per_update;
  bool replicated = false;  // one stage on K replicas instead of K stages
  std::string label() const {
    return (weights.empty() ? schedule : schedule + " " + weights) + (replicated ? ", K replicas" : "");
  }
};

struct Workload {
  int64_t width, micro_batch;
  int layers, units;
};

std::shared_ptr<nn::Sequential> make_model(const Workload& w) {
  Generator g(0);
  auto model = std::make_shared<nn::Sequential>();
  for (int i = 0; i < w.layers; ++i) {
    model->add(std::make_shared<nn::Linear>(w.width, w.width, g));
    model->add(std::make_shared<nn::Activation>(nn::ActivationKind::GELU));
  }
  return model;
}

// Seconds to train w.units micro-batches with `config` on `workers` stages, or replicas of one
// stage (after a warm-up).
double seconds_for_units(const Config& config, int workers, const Workload& w) {
  auto model = make_model(w);
  const int m = config.micro_batches_per_update;
  const bool asynchronous = !config.weights.empty();
  pipeline::PipelineOptions options{m, config.schedule, pipeline::Recompute::Never, {}, 0, false};
  if (asynchronous) options.weights = pipeline::parse_weight_policy(config.weights);
  const int stages = config.replicated ? 1 : workers;
  if (config.replicated) {
    options.replicas = {workers};
    options.model_factory = [w] { return make_model(w); };
  }
  const pipeline::StagePlan plan = pipeline::partition_uniform(*model, stages);
  pipeline::Pipeline pipe(model, plan, options, [](const Tensor& out, const Tensor& target) { return nn::mse_loss(out, target); });
  std::vector<std::vector<std::unique_ptr<nn::SGD>>> optimizers(stages);  // per replica, as PipeDream's stages update alone
  for (int s = 0; s < stages; ++s)
    for (int r = 0; r < pipe.replicas(s); ++r)
      optimizers[s].push_back(std::make_unique<nn::SGD>(pipe.replica(s, r)->named_parameters(), nn::SgdOptions{.lr = 1e-4f}));
  pipe.set_optimizer_step([&](int s, int r, uint64_t) {
    optimizers[s][r]->step();
    optimizers[s][r]->zero_grad();
  });
  Generator g(1);
  const int mini_batches = w.units / m;
  std::vector<datasets::Batch> batches;
  for (int i = 0; i < mini_batches; ++i)
    batches.push_back({randn({w.micro_batch * m, w.width}, g), randn({w.micro_batch * m, w.width}, g), 0});
  auto train = [&] {
    if (asynchronous) {
      pipe.run_async(batches, 0);
      return;
    }
    for (int i = 0; i < mini_batches; ++i) pipe.run(batches[i], i);  // each stage updates at its OptimizerStep
  };
  train();  // warm-up: allocations, first touches
  const auto start = std::chrono::steady_clock::now();
  train();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"minipipe: PipeDream's asynchronous pipeline against flushing schedules, on CPU stages"};
  int stages = 2, repeats = 5, micro_batches = 8;
  Workload w{384, 128, 8, 64};
  std::string json_path, only;
  app.add_option("--only", only, "rows whose label contains this, e.g. 'stash' (default: all)");
  app.add_option("--stages", stages, "stages K compared with one stage")->capture_default_str();
  app.add_option("--width", w.width, "features per layer")->capture_default_str();
  app.add_option("--layers", w.layers, "Linear + GELU pairs")->capture_default_str();
  app.add_option("--micro-batch", w.micro_batch, "rows per micro-batch")->capture_default_str();
  app.add_option("--micro-batches", micro_batches, "M: micro-batches per flush (gpipe, 1f1b) or per update (2bw)")
      ->capture_default_str();
  app.add_option("--units", w.units, "micro-batches per timing (a multiple of M)")->capture_default_str();
  app.add_option("--repeats", repeats, "timings per row (median reported)")->capture_default_str();
  app.add_option("--json", json_path, "also write the rows as JSON here");
  CLI11_PARSE(app, argc, argv);
  if (w.units % micro_batches != 0 || w.units % stages != 0 || stages < 2 || 2 * stages > 2 * w.layers) {
    std::fprintf(stderr, "--units must be a multiple of --micro-batches and of --stages (the replicas' round-robin), and "
                 "2 <= --stages <= 2 x --layers\n");
    return 2;
  }

  const std::vector<Config> configs{{"gpipe", "", micro_batches},          {"1f1b", "", micro_batches},
                                    {"pipedream", "stash", 1},             {"pipedream", "vertical-sync", 1},
                                    {"pipedream", "none", 1},              {"pipedream", "2bw", micro_batches},
                                    {"pipedream", "stash", 1, true}};
  struct Row {
    Config config;
    double one_stage, k_stages, speedup, ideal;
  };
  std::vector<Row> rows;
  for (const Config& c : configs) {
    if (c.schedule != "1f1b" && c.label().find(only) == std::string::npos) continue;  // 1f1b is the comparison
    std::vector<double> one, many;
    for (int r = 0; r < repeats; ++r) {  // alternated, so that drifts of the machine hit both alike
      one.push_back(seconds_for_units(c, 1, w));
      many.push_back(seconds_for_units(c, stages, w));
    }
    const double rows_per_run = static_cast<double>(w.units * w.micro_batch);
    const double flushed_units = c.weights.empty() ? c.micro_batches_per_update : w.units;
    Row row{c, rows_per_run / benchmarks::median(one), rows_per_run / benchmarks::median(many), 0,
            c.replicated ? stages : stages * flushed_units / (flushed_units + stages - 1)};
    row.speedup = row.k_stages / row.one_stage;
    rows.push_back(row);
    std::fprintf(stderr, "measured %s\n", c.label().c_str());
  }
  double flush_rate = 0;  // 1f1b with K stages
  for (const Row& r : rows)
    if (r.config.schedule == "1f1b") flush_rate = r.k_stages;
  std::printf("%-34s %14s %14s %9s %7s %11s\n", "schedule", "1 worker /s", "K workers /s", "speedup", "ideal", "vs 1f1b");
  for (const Row& r : rows)
    std::printf("%-34s %14.0f %14.0f %8.2fx %6.2fx %10.2fx\n", r.config.label().c_str(), r.one_stage, r.k_stages, r.speedup,
                r.ideal, r.k_stages / flush_rate);
  std::printf("(samples/s, median of %d; K = %d; %d x Linear(%lld) + GELU; micro-batches of %lld rows, %d per timing; "
              "M = %d; SGD; %u hardware threads)\n",
              repeats, stages, w.layers, static_cast<long long>(w.width), static_cast<long long>(w.micro_batch), w.units,
              micro_batches, std::thread::hardware_concurrency());
  if (!json_path.empty()) {
    std::vector<std::string> objects;
    for (const Row& r : rows)
      objects.push_back("{\"schedule\": \"" + r.config.schedule + "\", \"weights\": \"" + r.config.weights +
                        "\", \"stages\": " + std::to_string(r.config.replicated ? 1 : stages) +
                        ", \"replicas\": " + std::to_string(r.config.replicated ? stages : 1) +
                        ", \"one_stage_samples_per_second\": " +
                        std::to_string(r.one_stage) + ", \"samples_per_second\": " + std::to_string(r.k_stages) +
                        ", \"speedup\": " + std::to_string(r.speedup) + ", \"ideal\": " + std::to_string(r.ideal) +
                        ", \"versus_1f1b\": " + std::to_string(r.k_stages / flush_rate) + "}");
    if (!benchmarks::write_json_array(json_path, objects)) return 1;
  }
  return 0;
}
