// Throughput of PipeDream's asynchronous pipeline against the flushing schedules, on CPU
// stages (one thread each) of a balanced stack of Linear + GELU layers. Every row trains the
// same micro-batches (--micro-batch rows each, --units of them per timing) with SGD:
//   gpipe, 1f1b      M micro-batches per mini-batch, an update and a flush after each;
//   pipedream stash, vertical-sync, none   one update per micro-batch, no flush until the end;
//   pipedream 2bw    an update per M micro-batches, no flush until the end;
//   pipedream stash, K replicas   one stage on K replicas (data parallelism, section 3.1):
//                    round-robin micro-batches, gradients averaged before each update;
//   K independent stages   thread k trains stage k's layers alone on every micro-batch: the
//                    pipeline's work per worker with no messages, no bubble and no waiting. Its
//                    speedup is the most this machine gives K threads of this work (cores shared
//                    with other tenants, caches, memory bandwidth); "of ceiling" divides every
//                    row's speedup by it.
//   K independent processes   the same K shares, each in a process of its own (forked, started
//                    together): what separate address spaces get, the yardstick of the threads
//                    (whatever two threads of one process share that two processes do not, the
//                    allocator, page tables, the kernel thread pool, shows as the gap between the
//                    two rows; the last line prints it).
// Each row is timed with K = 1 and with K workers (the same work on one stage is ordinary
// training); speedup = K-worker rate / 1-worker rate, ideal = what the bubble allows:
// K M / (M + K - 1) for a flush per mini-batch, K U / (U + K - 1) for U streamed micro-batches
// (K for the replicas and the independent stages, which have no bubble).
// Rates are medians of --repeats timings. Repeats go round all rows in turn, and every ratio is
// the median of the ratios within each repeat, so a drift of the machine hits both sides.
//
//   pipedream_benchmark [--stages 2] [--width 384] [--layers 8] [--micro-batch 128] [--micro-batches 8]
//                       [--units 64] [--repeats 5] [--only stash] [--json FILE]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

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
  bool replicated = false;   // one stage on K replicas instead of K stages
  bool independent = false;  // K stages trained apart, without a pipeline: what the machine allows
  bool processes = false;    // ... each in a process of its own
  std::string label() const {
    if (independent) return processes ? "K independent processes" : "K independent stages (ceiling)";
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

// One pipeline with its optimizers and `units` micro-batches, ready to train: on `workers`
// stages, or on replicas of one stage.
struct Run {
  std::unique_ptr<pipeline::Pipeline> pipe;
  std::vector<std::vector<std::unique_ptr<nn::SGD>>> optimizers;  // per replica, as PipeDream's stages update alone
  std::vector<datasets::Batch> batches;
  bool asynchronous = false;

  void train() {
    if (asynchronous) {
      pipe->run_async(batches, 0);
      return;
    }
    for (size_t i = 0; i < batches.size(); ++i) pipe->run(batches[i], static_cast<int64_t>(i));  // each stage updates at its OptimizerStep
  }
};

std::unique_ptr<Run> prepare(const Config& config, int workers, const Workload& w, int units) {
  auto run = std::make_unique<Run>();
  auto model = make_model(w);
  const int m = config.micro_batches_per_update;
  run->asynchronous = !config.weights.empty();
  pipeline::PipelineOptions options{m, config.schedule, pipeline::Recompute::Never, {}, 0, false};
  if (run->asynchronous) options.weights = pipeline::parse_weight_policy(config.weights);
  const int stages = config.replicated ? 1 : workers;
  if (config.replicated) {
    options.replicas = {workers};
    options.model_factory = [w] { return make_model(w); };
  }
  const pipeline::StagePlan plan = pipeline::partition_uniform(*model, stages);
  run->pipe = std::make_unique<pipeline::Pipeline>(
      model, plan, options, [](const Tensor& out, const Tensor& target) { return nn::mse_loss(out, target); });
  run->optimizers.resize(stages);
  for (int s = 0; s < stages; ++s)
    for (int r = 0; r < run->pipe->replicas(s); ++r)
      run->optimizers[s].push_back(
          std::make_unique<nn::SGD>(run->pipe->replica(s, r)->named_parameters(), nn::SgdOptions{.lr = 1e-4f}));
  Run* self = run.get();
  run->pipe->set_optimizer_step([self](int s, int r, uint64_t) {
    self->optimizers[s][r]->step();
    self->optimizers[s][r]->zero_grad();
  });
  Generator g(1);
  for (int i = 0; i < units / m; ++i)
    run->batches.push_back({randn({w.micro_batch * m, w.width}, g), randn({w.micro_batch * m, w.width}, g), 0});
  return run;
}

// The share of w.layers that stage k of `workers` holds.
Workload share_of(const Workload& w, int k, int workers) {
  Workload share = w;
  share.layers = w.layers * (k + 1) / workers - w.layers * k / workers;
  return share;
}

// Seconds for `workers` forked processes, each training its share alone after a warm-up, all
// started together (the parent waits until every child is ready): the longest of them.
double seconds_in_processes(const Config& config, int workers, const Workload& w) {
  int ready[2], go[2], result[2];
  if (pipe(ready) != 0 || pipe(go) != 0 || pipe(result) != 0) throw std::runtime_error("pipe failed");
  std::vector<pid_t> children;
  for (int k = 0; k < workers; ++k) {
    const pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      auto run = prepare(config, 1, share_of(w, k, workers), w.units);
      run->train();  // warm-up
      char token = 'r';
      double seconds = -1.0;
      if (write(ready[1], &token, 1) == 1 && read(go[0], &token, 1) == 1) {
        const auto start = std::chrono::steady_clock::now();
        run->train();
        seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
      _exit(write(result[1], &seconds, sizeof seconds) == sizeof seconds ? 0 : 1);
    }
    children.push_back(pid);
  }
  char token = 'g';
  for (int k = 0; k < workers; ++k)
    if (read(ready[0], &token, 1) != 1) throw std::runtime_error("a benchmark process died before it was ready");
  for (int k = 0; k < workers; ++k)
    if (write(go[1], &token, 1) != 1) throw std::runtime_error("could not start the benchmark processes");
  double longest = 0.0;
  for (int k = 0; k < workers; ++k) {
    double seconds = -1.0;
    if (read(result[0], &seconds, sizeof seconds) != sizeof seconds || seconds < 0)
      throw std::runtime_error("a benchmark process failed");
    longest = std::max(longest, seconds);
  }
  for (const pid_t pid : children) waitpid(pid, nullptr, 0);
  for (int fd : {ready[0], ready[1], go[0], go[1], result[0], result[1]}) close(fd);
  return longest;
}

// Seconds to train w.units micro-batches with `config` on `workers` workers, after a warm-up
// (allocations, first touches). Independent stages: worker k trains, alone, the layers that
// stage k of the pipeline would hold, on every micro-batch.
double seconds_for_units(const Config& config, int workers, const Workload& w) {
  if (config.processes) return seconds_in_processes(config, workers, w);
  std::vector<std::unique_ptr<Run>> runs;
  if (config.independent) {
    for (int k = 0; k < workers; ++k) runs.push_back(prepare(config, 1, share_of(w, k, workers), w.units));
  } else {
    runs.push_back(prepare(config, workers, w, w.units));
  }
  for (auto& run : runs) run->train();  // warm-up
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (auto& run : runs) threads.emplace_back([&run] { run->train(); });
  for (auto& t : threads) t.join();
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
                                    {"pipedream", "stash", 1, true},
                                    {"pipedream", "stash", 1, false, true},
                                    {"pipedream", "stash", 1, false, true, true}};
  std::vector<Config> selected;
  for (const Config& c : configs)
    if (c.schedule == "1f1b" || c.independent || c.label().find(only) != std::string::npos)
      selected.push_back(c);  // 1f1b and the ceiling are the comparisons
  size_t flush = 0, ceiling = 0, processes = 0;  // their places in `selected`
  for (size_t c = 0; c < selected.size(); ++c) {
    if (selected[c].schedule == "1f1b") flush = c;
    if (selected[c].independent && !selected[c].processes) ceiling = c;
    if (selected[c].processes) processes = c;
  }
  // one[c][r], many[c][r]: seconds of repeat r. Repeats go round every row in turn, and each
  // ratio below is a median of per-repeat ratios, so that drifts of the machine hit both sides.
  std::vector<std::vector<double>> one(selected.size()), many(selected.size());
  for (int r = 0; r < repeats; ++r) {
    for (size_t c = 0; c < selected.size(); ++c) {
      one[c].push_back(seconds_for_units(selected[c], 1, w));
      many[c].push_back(seconds_for_units(selected[c], stages, w));
    }
    std::fprintf(stderr, "repeat %d of %d measured\n", r + 1, repeats);
  }
  auto speedup = [&](size_t c, int r) { return one[c][r] / many[c][r]; };
  auto median_ratio = [&](auto ratio_of_repeat) {
    std::vector<double> ratios;
    for (int r = 0; r < repeats; ++r) ratios.push_back(ratio_of_repeat(r));
    return benchmarks::median(ratios);
  };
  struct Row {
    Config config;
    double one_stage, k_stages, speedup, ideal, versus_1f1b, of_ceiling;
  };
  std::vector<Row> rows;
  const double rows_per_run = static_cast<double>(w.units * w.micro_batch);
  for (size_t c = 0; c < selected.size(); ++c) {
    const Config& config = selected[c];
    const double flushed_units = config.weights.empty() ? config.micro_batches_per_update : w.units;
    rows.push_back({config, rows_per_run / benchmarks::median(one[c]), rows_per_run / benchmarks::median(many[c]),
                    median_ratio([&](int r) { return speedup(c, r); }),
                    config.replicated || config.independent ? stages
                                                            : stages * flushed_units / (flushed_units + stages - 1),
                    median_ratio([&](int r) { return many[flush][r] / many[c][r]; }),
                    median_ratio([&](int r) { return speedup(c, r) / speedup(ceiling, r); })});
  }
  std::printf("%-34s %14s %14s %9s %7s %11s %11s\n", "schedule", "1 worker /s", "K workers /s", "speedup", "ideal", "vs 1f1b",
              "of ceiling");
  for (const Row& r : rows)
    std::printf("%-34s %14.0f %14.0f %8.2fx %6.2fx %10.2fx %10.0f%%\n", r.config.label().c_str(), r.one_stage, r.k_stages,
                r.speedup, r.ideal, r.versus_1f1b, 100 * r.of_ceiling);
  std::printf("(samples/s: medians of %d; ratios: medians of per-repeat ratios; K = %d; %d x Linear(%lld) + GELU; micro-batches of %lld rows, %d per timing; "
              "M = %d; SGD; %u hardware threads)\n",
              repeats, stages, w.layers, static_cast<long long>(w.width), static_cast<long long>(w.micro_batch), w.units,
              micro_batches, std::thread::hardware_concurrency());
  const double threads_of_processes = median_ratio([&](int r) { return many[processes][r] / many[ceiling][r]; });
  std::printf("K independent threads train at %.2fx the speed of K independent processes (median of per-repeat ratios)\n",
              threads_of_processes);
  if (!json_path.empty()) {
    std::vector<std::string> objects;
    for (const Row& r : rows)
      objects.push_back("{\"schedule\": \"" + r.config.schedule + "\", \"weights\": \"" + r.config.weights +
                        "\", \"stages\": " + std::to_string(r.config.replicated ? 1 : stages) +
                        ", \"replicas\": " + std::to_string(r.config.replicated ? stages : 1) +
                        ", \"independent\": " + (r.config.independent ? "true" : "false") +
                        ", \"processes\": " + (r.config.processes ? "true" : "false") +
                        ", \"one_stage_samples_per_second\": " +
                        std::to_string(r.one_stage) + ", \"samples_per_second\": " + std::to_string(r.k_stages) +
                        ", \"speedup\": " + std::to_string(r.speedup) + ", \"ideal\": " + std::to_string(r.ideal) +
                        ", \"versus_1f1b\": " + std::to_string(r.versus_1f1b) +
                        ", \"of_ceiling\": " + std::to_string(r.of_ceiling) + "}");
    if (!benchmarks::write_json_array(json_path, objects)) return 1;
  }
  return 0;
}
