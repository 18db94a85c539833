// The `minipipe` command line, parsed by CLI11. The only file that includes CLI11 (it costs
// seconds).
#include "command_line.h"

#include <CLI/CLI.hpp>
#include <unistd.h>

#include <exception>
#include <filesystem>
#include <ostream>

#include "kernels/cpu/threads.h"
#include "nn/checkpoint_files.h"
#include "nn/json_reader.h"
#include "pipeline/schedule.h"
#include "pipeline/token_slices.h"

namespace minipipe::cli {

namespace {

// CLI11's PositiveNumber prints the whole double range in its message; this one says it plainly.
const CLI::Validator kPositive(
    [](std::string& value) {
      try {
        if (std::stod(value) > 0) return std::string();
      } catch (const std::exception&) {
      }
      return "must be a positive number, got '" + value + "'";
    },
    "POSITIVE");

// Seeds and counts that may be 0: digits only (CLI11's own check prints the whole double range).
const CLI::Validator kWholeNumber(
    [](std::string& value) {
      const bool digits = !value.empty() && value.size() <= 19 && value.find_first_not_of("0123456789") == std::string::npos;
      return digits ? std::string() : "must be a whole number >= 0, got '" + value + "'";
    },
    "WHOLE");

// Bytes of text to sample: sampling runs one forward pass per byte, so a length beyond this
// would run for hours (and a negative one is a mistake, not "none").
constexpr int64_t kMostSampleBytes = 1000000;
CLI::Validator sample_length(int64_t least) {
  return CLI::Validator(
      [least](std::string& value) {
        const bool digits = !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
        if (digits && value.size() <= 7 && std::stoll(value) >= least && std::stoll(value) <= kMostSampleBytes)
          return std::string();
        return "must be a number of bytes from " + std::to_string(least) + " to " + std::to_string(kMostSampleBytes) +
               (least == 0 ? " (0: no sample)" : "") + ", got '" + value + "'";
      },
      "BYTES");
}

// An accuracy target: 0.95, not 95 (the JSON logs and the CNN's evaluation use fractions).
const CLI::Validator kFraction(
    [](std::string& value) {
      try {
        if (const double fraction = std::stod(value); fraction > 0 && fraction <= 1) return std::string();
      } catch (const std::exception&) {
      }
      return "must be a fraction above 0 and at most 1 (0.95 for 95%), got '" + value + "'";
    },
    "FRACTION");

// --token-slices: a count of at least 1, lengths like 40+24, or auto.
const CLI::Validator kSliceCount(
    [](std::string& value) {
      const bool count = !value.empty() && value.size() <= 9 && value.find_first_not_of("0123456789") == std::string::npos &&
                         std::stol(value) > 0;
      if (count || value == "auto") return std::string();
      if (value.find('+') != std::string::npos) {
        try {
          pipeline::parse_token_slices(value);
          return std::string();
        } catch (const std::invalid_argument&) {
        }
      }
      return "must be a number of slices >= 1, their lengths joined by '+' (40+24), or auto, got '" + value + "'";
    },
    "N|LENGTHS|auto");

// Checkpoints, traces and timelines are written at the end of a run: a path that cannot be
// written must stop the run before it starts, not after minutes of training.
const CLI::Validator kOutputFile(
    [](std::string& value) {
      const std::filesystem::path path(value);
      const std::filesystem::path folder = path.has_parent_path() ? path.parent_path() : ".";
      std::error_code ignored;
      if (std::filesystem::is_directory(path, ignored)) return "'" + value + "' is a folder: name a file in it";
      if (!std::filesystem::is_directory(folder, ignored))
        return "folder '" + folder.string() + "' does not exist: create it first";
      if (::access(folder.c_str(), W_OK) != 0) return "cannot write into folder '" + folder.string() + "'";
      return std::string();
    },
    "FILE");

// A checkpoint to read: a file, or a sharded checkpoint's name (its NAME.index.json exists).
const CLI::Validator kCheckpoint(
    [](std::string& value) {
      std::error_code ignored;
      if (std::filesystem::is_directory(value, ignored)) return "'" + value + "' is a folder: give a checkpoint file";
      if (std::filesystem::is_regular_file(value, ignored) || nn::is_sharded_checkpoint(value)) return std::string();
      return "no checkpoint '" + value + "': neither a file nor a sharded checkpoint's index ('" +
             nn::checkpoint_index_path(value) + "')";
    },
    "CHECKPOINT");

// --schedule's help: every schedule, one line each.
std::string schedule_help() {
  std::string help = "the schedule:";
  for (const pipeline::ScheduleName& s : pipeline::schedule_names()) help += std::string("\n  ") + s.name + ": " + s.summary;
  return help;
}

// --schedule-file F.csv: a schedule in PyTorch's CSV format, whose rows give the stages,
// micro-batches and chunks, so the flags that would give them are excluded.
void add_schedule_file_option(CLI::App& command, std::string& file, const std::vector<CLI::Option*>& given_by_file) {
  CLI::Option* option = command.add_option("--schedule-file", file,
                                           "a schedule as PyTorch's CSV (torch.distributed.pipelining): one row per "
                                           "stage of actions like 0F0, 1I2, 1W2, 0B1; it sets --stages, --micro-batches "
                                           "and the chunks per stage (looped or V placement)")
                            ->check(CLI::ExistingFile);
  for (CLI::Option* other : given_by_file) option->excludes(other);
}

// zb-auto's costs and memory, for train and simulate.
void add_zb_auto_options(CLI::App& command, std::string& costs_from, int& max_in_flight) {
  command.add_option("--costs-from", costs_from,
                     "zb-auto: each stage's forward, backward and W from this trace (--trace of a run on the same "
                     "--stages; default: train measures them on one micro-batch, simulate uses --forward-cost and "
                     "--backward-cost)")
      ->check(CLI::ExistingFile);
  command.add_option("--max-in-flight", max_in_flight,
                     "zb-auto: the most micro-batches a stage holds forwarded and not yet B (default: --stages, 1F1B's "
                     "most)")
      ->check(kPositive);
}

void add_training_options(CLI::App& command, TrainOptions& o) {
  command.add_option("--device", o.device, "cpu or cuda:N")->capture_default_str();
  command.add_option("--steps", o.steps, "optimizer steps in all (default: the model's)")->check(kPositive);
  command.add_option("--batch-size", o.batch_size, "samples per step (default: the model's)")->check(kPositive);
  command.add_option("--lr", o.learning_rate, "peak learning rate (warmup, then cosine decay)")->check(kPositive);
  command.add_option("--seed", o.seed, "seed of initialisation, data order and dropout")
      ->check(kWholeNumber)->capture_default_str();
  command.add_option("--data", o.data, "data file or folder (default: the bundled data)");
  command.add_option("--save", o.save, "write a checkpoint (safetensors) here at the end")->check(kOutputFile);
  command.add_option("--resume", o.resume, "continue from this checkpoint (same results as never stopping): a file, or the "
                     "name a run under mpirun saved its shards under")->check(kCheckpoint);
  command.add_option("--stop-after", o.stop_after, "stop after this many steps of this run (then --save, --resume later)")
      ->check(kPositive);
  command.add_option("--eval-interval", o.eval_interval, "steps between evaluations")->check(kPositive);
  command.add_option("--target-loss", o.target_loss,
                     "stop at the first evaluation whose loss is at most this, and report the step and training seconds "
                     "it took")
      ->check(kPositive);
  command.add_option("--memory-limit", o.memory_limit_mib,
                     "MiB the run may plan to use (default: the machine's available memory); sizes are checked before training")
      ->check(kPositive);
  command.add_option("--log-json", o.log_json, "write JSON Lines (one object per step/eval, then a summary) here")->check(kOutputFile);
  PipelineFlags& p = o.pipeline;
  CLI::Option* stages = command.add_option("--stages", p.stages, "pipeline stages K (a thread each; see --threads)")->check(kPositive)->capture_default_str();
  command.add_option("--data-parallel", p.data_parallel,
                     "D pipeline replicas, each training on its share of every mini-batch, their gradients averaged "
                     "before each step: in this process (K x D stage threads), or under mpirun -np K x D one rank per stage "
                     "of each (the two train alike, bit for bit)")
      ->check(kPositive)
      ->capture_default_str();
  command.add_option("--rank-timeout", p.rank_timeout,
                     "under mpirun: seconds a stage waits for a neighbouring rank's message before it fails and ends the "
                     "run (0: no limit)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command.add_option("--link-latency-us", p.link_latency_us,
                     "slow every message between stages by this latency (microseconds), to see communication's share")
      ->check(CLI::Range(0.0, 1e7));
  command.add_option("--link-gbps", p.link_gbps, "and limit each direction between two stages to this bandwidth (gigabits/s)")
      ->check(CLI::Range(0.0, 1e6));
  CLI::Option* micro_batches = command.add_option("--micro-batches", p.micro_batches, "micro-batches M per mini-batch (pipedream: per update)")->check(kPositive)->capture_default_str();
  CLI::Option* schedule = command.add_option("--schedule", p.schedule, schedule_help())
      ->check(CLI::IsMember(pipeline::schedule_name_list()))->capture_default_str();
  CLI::Option* virtual_stages = command.add_option("--virtual-stages", p.virtual_stages, "interleaved: model chunks per stage v (the model is cut into "
                     "stages x v pieces, placed round-robin; M must be a multiple of --stages)")
      ->check(kPositive)->capture_default_str();
  add_schedule_file_option(command, p.schedule_file, {stages, micro_batches, schedule, virtual_stages});
  add_zb_auto_options(command, p.costs_from, p.max_in_flight);
  command.add_flag("--profile", p.profile,
                   "time every CPU kernel of the training steps and print where the time went, by phase (forward, "
                   "backward, W) and kernel; the summary's kernel_profile holds it");
  command.add_option("--weights", p.weights,
                     "pipedream's weight versions: stash (backward uses its forward's), vertical-sync (every stage uses the "
                     "input stage's), none (latest; stale gradients), 2bw (two versions, --micro-batches >= --stages)")
      ->check(CLI::IsMember({"stash", "vertical-sync", "none", "2bw"}));
  CLI::Option* partition =
      command.add_option("--partition", p.partition, "uniform, params, time, or layers per stage like 3,3,2")->capture_default_str();
  CLI::Option* plan = command.add_option("--plan", p.plan, "auto: stages (and under pipedream, replicas) from PipeDream's "
                                         "planner on a profile of the model for --stages workers (see `minipipe plan`)")
      ->check(CLI::IsMember({"auto"}))->excludes(partition);
  command.add_option("--replicas", p.replicas, "pipedream: replicas per stage like 2,1 (a thread each; the mini-batches go "
                     "round-robin, gradients are averaged before each update)")->excludes(plan);
  command.add_option("--recompute", p.recompute, "never, always or except_last")
      ->check(CLI::IsMember({"never", "always", "except_last"}))->capture_default_str();
  command.add_option("--stage-devices", p.stage_devices, "one device per stage, e.g. cpu,cpu (default: --device)");
  command.add_option("--threads", p.threads, "CPU threads per stage for the kernels (same results for any count)")
      ->check(CLI::Range(1, minipipe::kernels::cpu::kMaxKernelThreads))->capture_default_str();
  command.add_flag("--deferred-batch-norm", p.deferred_batch_norm, "move BatchNorm's running statistics once per "
                   "mini-batch, by all its micro-batches, as one device would (torchgpipe's DeferredBatchNorm)");
  command.add_option("--status-after", p.status_after, "print where every stage is (its instruction, what it waits for) when "
                     "a step runs longer than this many seconds; 0: never (kill -USR1 asks any time)")
      ->check(CLI::Range(0.0, 1e9))->capture_default_str();
  CLI::Option* trace =
      command.add_option("--trace", p.trace, "write a Chrome-trace JSON of the last step (opens in Perfetto)")->check(kOutputFile);
  CLI::Option* timeline = command.add_option("--timeline", p.timeline, "write an SVG timeline of the last step")->check(kOutputFile);
  command.add_flag("--untimed", p.untimed, "do not time each instruction: on a GPU a timed instruction waits for its "
                   "stream, so a stage cannot queue the next one meanwhile. The summary's measured bubble is then null")
      ->excludes(trace)->excludes(timeline);
}

// `train cnn` and `train gpt`; the first is returned, the second through `gpt_command`.
CLI::App* add_train_commands(CLI::App& app, CommandLine& parsed, CLI::App*& gpt_command) {
  CLI::App* train = app.add_subcommand("train", "train an example model");
  train->require_subcommand(1);
  CnnOptions& cnn = parsed.cnn;
  CLI::App* train_cnn_command = train->add_subcommand("cnn", "a small ResNet on the bundled digits (or MNIST-style IDX files)");
  add_training_options(*train_cnn_command, cnn);
  train_cnn_command->add_option("--epochs", cnn.epochs, "passes over the training set (instead of --steps)")->check(kPositive);
  train_cnn_command->add_option("--target-accuracy", cnn.target_accuracy,
                                "stop at the first evaluation whose test accuracy is at least this fraction (0.95 for 95%), "
                                "and report the step and training seconds it took")
      ->check(kFraction);
  train_cnn_command->add_option("--width", cnn.width, "channels of the first stage")->check(kPositive)->capture_default_str();
  train_cnn_command->add_option("--blocks", cnn.blocks_per_stage, "residual blocks per stage")->check(kPositive)->capture_default_str();

  GptOptions& gpt = parsed.gpt;
  CLI::App* train_gpt_command = train->add_subcommand("gpt", "a byte-level GPT on the bundled novel (or any text file)");
  add_training_options(*train_gpt_command, gpt);
  train_gpt_command->add_option("--dim", gpt.dim, "model width")->check(kPositive)->capture_default_str();
  train_gpt_command->add_option("--layers", gpt.layers, "Transformer blocks")->check(kPositive)->capture_default_str();
  train_gpt_command->add_option("--heads", gpt.heads, "attention heads")->check(kPositive)->capture_default_str();
  train_gpt_command->add_option("--context", gpt.context, "tokens per sequence")->check(kPositive)->capture_default_str();
  train_gpt_command->add_option("--dropout", gpt.dropout, "dropout probability")->check(CLI::Range(0.0, 0.99))->capture_default_str();
  train_gpt_command->add_flag("--tie-embeddings", gpt.tie_embeddings,
                              "the head's projection reuses the token embedding (GPT-2); on different stages, their "
                              "gradients are summed before each step");
  train_gpt_command->add_option("--sample-length", gpt.sample_length, "bytes of text to print after training (0: none)")
      ->check(sample_length(0))->capture_default_str();
  train_gpt_command->add_option("--token-slices", gpt.pipeline.token_slices,
                                "TeraPipe: cut each sequence into N equal token slices that flow through the stages like "
                                "micro-batches, into slices of the lengths given (40+24, as the planner prints them), or "
                                "auto (slices chosen by TeraPipe's planner on timings of the stages)")
      ->check(kSliceCount);
  gpt_command = train_gpt_command;
  return train_cnn_command;
}

// `eval`
CLI::App* add_eval_command(CLI::App& app, CommandLine& parsed) {
  EvalOptions& eval = parsed.eval;
  CLI::App* eval_command = app.add_subcommand("eval", "the validation loss of a model saved by `train --save`, as training "
                                              "computes it");
  eval_command->add_option("model", eval.model, "gpt or cnn")->check(CLI::IsMember({"gpt", "cnn"}))->required();
  eval_command->add_option("--checkpoint", eval.checkpoint, "checkpoint: a file, or a sharded checkpoint's name")
      ->required()->check(kCheckpoint);
  eval_command->add_option("--data", eval.data, "the data trained on (default: the bundled text or digits)");
  eval_command->add_option("--device", eval.device, "cpu or cuda:N")->capture_default_str();
  eval_command->add_option("--batch-size", eval.batch_size, "gpt: windows per batch (default: the training batch size, "
                           "recorded in the file)")->check(kPositive);
  eval_command->add_flag("--json", eval.json, "print one JSON object instead of text");
  return eval_command;
}

// `sample gpt`
CLI::App* add_sample_command(CLI::App& app, CommandLine& parsed) {
  CLI::App* sample = app.add_subcommand("sample", "generate from a trained model");
  sample->require_subcommand(1);
  SampleOptions& sample_options = parsed.sample;
  CLI::App* sample_gpt_command = sample->add_subcommand("gpt", "text from a checkpoint of `train gpt --save`");
  sample_gpt_command->add_option("--checkpoint", sample_options.checkpoint, "checkpoint: a file, or a sharded checkpoint's name")
      ->required()->check(kCheckpoint);
  sample_gpt_command->add_option("--prompt", sample_options.prompt, "text to continue")->capture_default_str();
  sample_gpt_command->add_option("--length", sample_options.length, "bytes to generate")->check(sample_length(1))->capture_default_str();
  sample_gpt_command->add_option("--temperature", sample_options.temperature, "softmax temperature")->check(kPositive)->capture_default_str();
  sample_gpt_command->add_option("--seed", sample_options.seed, "seed of the draws")->check(kWholeNumber)
      ->capture_default_str();
  return sample_gpt_command;
}

// `simulate`
CLI::App* add_simulate_command(CLI::App& app, CommandLine& parsed) {
  SimulateOptions& sim = parsed.simulate;
  CLI::App* simulate_command = app.add_subcommand("simulate", "time a schedule with a cost model (no training)");
  CLI::Option* stages = simulate_command->add_option("--stages", sim.stages, "stages K")->check(kPositive)->capture_default_str();
  CLI::Option* micro_batches =
      simulate_command->add_option("--micro-batches", sim.micro_batches, "micro-batches M")->check(kPositive)->capture_default_str();
  CLI::Option* schedule = simulate_command->add_option("--schedule", sim.schedule, schedule_help())
      ->check(CLI::IsMember(pipeline::schedule_name_list()))->capture_default_str();
  CLI::Option* virtual_stages =
      simulate_command->add_option("--virtual-stages", sim.virtual_stages, "interleaved: model chunks per stage v (each costs 1/v of "
                                   "--forward-cost and --backward-cost)")->check(kPositive)->capture_default_str();
  add_schedule_file_option(*simulate_command, sim.schedule_file, {stages, micro_batches, schedule, virtual_stages});
  add_zb_auto_options(*simulate_command, sim.costs_from, sim.max_in_flight);
  simulate_command->add_option("--bubble-chart", sim.bubble_chart,
                               "instead of one schedule: the bubble of gpipe, 1f1b, interleaved, zb-h1, zb-h2 and zb-v "
                               "against M = 1..--micro-batches on --stages, as a table and an SVG chart written here")
      ->excludes(schedule);
  simulate_command->add_option("--memory-chart", sim.memory_chart,
                               "the micro-batches (or chunk units, or token slices) whose activations each stage holds "
                               "over time, as an SVG chart written here");
  simulate_command->add_option("--versions-chart", sim.versions_chart,
                               "pipedream: the weight versions each stage holds over time, as an SVG chart written here");
  simulate_command->add_option("--export-schedule", sim.export_schedule,
                               "write the schedule as a PyTorch schedule CSV (torch.distributed.pipelining's format)")
      ->check(kOutputFile);
  simulate_command->add_option("--weights", sim.weights, "pipedream's weight policy: stash (default), vertical-sync, none or 2bw")
      ->check(CLI::IsMember({"stash", "vertical-sync", "none", "2bw"}));
  simulate_command->add_option("--token-slices", sim.token_slices, "token slices per micro-batch (TeraPipe; gpipe and 1f1b)")
      ->check(kPositive)->capture_default_str();
  simulate_command->add_option("--replicas", sim.replicas, "pipedream: replicas per stage like 2,1 (the mini-batches go round-robin)");
  simulate_command->add_option("--mini-batches", sim.mini_batches, "pipedream: mini-batches streamed, each of --micro-batches")
      ->check(kPositive)->capture_default_str();
  simulate_command->add_option("--forward-cost", sim.forward_cost, "time of one forward on one stage")->check(kPositive)->capture_default_str();
  simulate_command->add_option("--backward-cost", sim.backward_cost, "time of one backward on one stage")->check(kPositive)->capture_default_str();
  simulate_command->add_option("--weight-cost", sim.weight_cost,
                               "zero bubble: the part of the backward that computes weight gradients, W (default: half of it)")
      ->check(CLI::NonNegativeNumber);
  simulate_command->add_option("--communication-cost", sim.communication_cost,
                               "time of one message between stages (a link's latency plus bytes over bandwidth)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  simulate_command->add_flag("--grid", sim.grid, "draw the step-by-stage grid");
  simulate_command->add_flag("--json", sim.json, "print one JSON object instead of text");
  simulate_command->add_option("--timeline", sim.timeline, "write an SVG timeline")->check(kOutputFile);
  simulate_command->add_option("--trace", sim.trace, "write a Chrome-trace JSON")->check(kOutputFile);
  simulate_command->add_option("--compare", sim.compare,
                               "a trace of `train --trace` with this schedule: predict it from its own per-stage times "
                               "(microseconds) and list each instruction's error; --timeline then draws both")
      ->check(CLI::ExistingFile);
  return simulate_command;
}

// `explain`
CLI::App* add_explain_command(CLI::App& app, CommandLine& parsed) {
  ExplainOptions& explain_options = parsed.explain;
  CLI::App* explain_command =
      app.add_subcommand("explain", "where each stage's time went in a traced step (train --log-json and --trace)");
  explain_command->add_option("log", explain_options.log, "the run's --log-json file")->required()->check(CLI::ExistingFile);
  explain_command->add_option("trace", explain_options.trace, "the run's --trace file")->required()->check(CLI::ExistingFile);
  explain_command->add_flag("--json", explain_options.json, "print one JSON object instead of a table");
  explain_command->add_option("--memory-chart", explain_options.memory_chart,
                              "write the memory each stage held over the traced step (measured) as an SVG chart")
      ->check(kOutputFile);
  return explain_command;
}

// `report`
CLI::App* add_report_command(CLI::App& app, CommandLine& parsed) {
  ReportOptions& report_options = parsed.report;
  CLI::App* report_command = app.add_subcommand(
      "report", "one self-contained HTML page about a run: loss, measured and predicted timeline, bubble, memory");
  report_command->add_option("log", report_options.log, "the run's --log-json file")->required()->check(CLI::ExistingFile);
  report_command->add_option("trace", report_options.trace, "the run's --trace file (for the timeline)")->check(CLI::ExistingFile);
  report_command->add_option("-o,--output", report_options.output, "the page to write")->check(kOutputFile)->capture_default_str();
  report_command->add_option("--memory-budget-mib", report_options.memory_budget_mib,
                             "score the run: its median throughput if every stage's peak memory is within this many MiB, "
                             "else 0 (the course's capstone)")
      ->check(kPositive);
  return report_command;
}

// `partition`
CLI::App* add_partition_command(CLI::App& app, CommandLine& parsed) {
  PartitionOptions& part = parsed.partition;
  CLI::App* partition_command = app.add_subcommand("partition", "print how a model would be cut into stages");
  partition_command->add_option("model", part.model, "gpt or cnn")->check(CLI::IsMember({"gpt", "cnn"}))->capture_default_str();
  partition_command->add_option("--stages", part.stages, "stages K")->check(kPositive)->capture_default_str();
  partition_command->add_option("--method", part.method, "uniform, params, time, or a balance like 2,2,2")->capture_default_str();
  partition_command->add_option("--batch-size", part.batch_size, "micro-batch size profiled by --method time")->check(kPositive)->capture_default_str();
  return partition_command;
}

// `plan`
CLI::App* add_plan_command(CLI::App& app, CommandLine& parsed) {
  PlanOptions& plan_options = parsed.plan;
  CLI::App* plan_command = app.add_subcommand("plan", "choose stages and replicas by PipeDream's planner (profiles the model)");
  plan_command->add_option("model", plan_options.model, "gpt or cnn")->check(CLI::IsMember({"gpt", "cnn"}))->capture_default_str();
  plan_command->add_option("--workers", plan_options.workers, "workers (threads or devices) to plan for")->check(kPositive)
      ->capture_default_str();
  plan_command->add_option("--batch-size", plan_options.batch_size, "mini-batch size profiled")->check(kPositive)->capture_default_str();
  plan_command->add_option("--bandwidth", plan_options.bandwidth_gb_per_second, "GB/s between two workers")->check(kPositive)
      ->capture_default_str();
  plan_command->add_option("--latency", plan_options.latency_us, "microseconds per message")->check(CLI::Range(0.0, 1e9))
      ->capture_default_str();
  plan_command->add_option("--memory", plan_options.memory_mib, "MiB per worker (0: no limit)")->check(kWholeNumber)
      ->capture_default_str();
  plan_command->add_option("--most-replicas", plan_options.most_replicas, "replicas per stage at most (0: any)")
      ->check(kWholeNumber)->capture_default_str();
  return plan_command;
}

// `plan-slices`
CLI::App* add_plan_slices_command(CLI::App& app, CommandLine& parsed) {
  PlanSlicesOptions& slices = parsed.plan_slices;
  CLI::App* plan_slices_command =
      app.add_subcommand("plan-slices", "choose token slices by TeraPipe's planner (times slices of a GPT on this machine)");
  plan_slices_command->add_option("model", slices.model, "gpt")->check(CLI::IsMember({"gpt"}))->capture_default_str();
  plan_slices_command->add_option("--context", slices.context, "tokens per sequence")->check(kPositive)->capture_default_str();
  plan_slices_command->add_option("--stages", slices.stages, "pipeline stages K")->check(kPositive)->capture_default_str();
  plan_slices_command->add_option("--batch-size", slices.batch_size, "sequences per mini-batch (split into micro-batches too)")
      ->check(kPositive)->capture_default_str();
  plan_slices_command->add_option("--dim", slices.dim, "model width")->check(kPositive)->capture_default_str();
  plan_slices_command->add_option("--layers", slices.layers, "Transformer blocks (default: two per stage)")->check(kPositive);
  plan_slices_command->add_option("--heads", slices.heads, "attention heads")->check(kPositive)->capture_default_str();
  plan_slices_command->add_option("--granularity", slices.granularity, "slice lengths in multiples of this (default: context / 64)")
      ->check(kPositive);
  plan_slices_command->add_option("--repeats", slices.repeats, "timings per point (the median counts)")->check(kPositive)
      ->capture_default_str();
  plan_slices_command->add_option("--memory-limit", slices.memory_limit_mib,
                                  "MiB the timed model may take (default: the machine's available memory)")->check(kPositive);
  plan_slices_command->add_flag("--json", slices.json, "print one JSON object instead of text");
  return plan_slices_command;
}

}  // namespace


bool parse_command_line(int argc, const char* const* argv, CommandLine& parsed, int& exit_status, std::ostream& out,
                        std::ostream& err) {
  CLI::App app{"minipipe: a small deep-learning framework for learning and measuring pipeline parallelism"};
  app.require_subcommand(1);
  // One line, like every other error of minipipe's.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    // Flags may hold any bytes; none but printable ones reach the terminal.
    return "minipipe: error: " + minipipe::nn::printable_excerpt(e.what(), 2000) + " (see --help)\n";
  });

  CLI::App* train_gpt_command = nullptr;
  CLI::App* train_cnn_command = add_train_commands(app, parsed, train_gpt_command);
  CLI::App* eval_command = add_eval_command(app, parsed);
  CLI::App* sample_gpt_command = add_sample_command(app, parsed);
  CLI::App* info = app.add_subcommand("info", "print what this build contains");
  CLI::App* simulate_command = add_simulate_command(app, parsed);
  CLI::App* explain_command = add_explain_command(app, parsed);
  CLI::App* report_command = add_report_command(app, parsed);
  CLI::App* partition_command = add_partition_command(app, parsed);
  CLI::App* plan_command = add_plan_command(app, parsed);
  CLI::App* plan_slices_command = add_plan_slices_command(app, parsed);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ExtrasError& error) {
    // `train cnn --token-slices 2`: say whose flag it is, not only that it was unexpected.
    const std::pair<CLI::App*, CLI::App*> given_and_other[] = {{train_cnn_command, train_gpt_command},
                                                               {train_gpt_command, train_cnn_command}};
    for (const auto& [given, other] : given_and_other) {
      if (!*given) continue;
      for (const std::string& extra : given->remaining()) {
        const std::string name = extra.substr(0, extra.find('='));
        if (name.rfind("--", 0) != 0 || !other->get_option_no_throw(name)) continue;
        err << "minipipe: error: " << name << " is an option of `minipipe train " << other->get_name() << "`, not of `train "
            << given->get_name() << "` (see `minipipe train " << given->get_name() << " --help`)\n";
        exit_status = static_cast<int>(CLI::ExitCodes::ExtrasError);
        return false;
      }
    }
    exit_status = app.exit(error, out, err);
    return false;
  } catch (const CLI::ParseError& error) {
    exit_status = app.exit(error, out, err);
    return false;
  }
  const std::pair<const CLI::App*, Command> commands[] = {
      {train_cnn_command, Command::TrainCnn}, {train_gpt_command, Command::TrainGpt},  {sample_gpt_command, Command::SampleGpt},
      {eval_command, Command::Eval},          {info, Command::Info},                  {simulate_command, Command::Simulate},   {explain_command, Command::Explain},     {report_command, Command::Report},
      {partition_command, Command::Partition},
      {plan_command, Command::Plan},          {plan_slices_command, Command::PlanSlices}};
  for (const auto& [command, which] : commands)
    if (*command) {
      parsed.command = which;
      return true;
    }
  exit_status = 0;
  return false;
}

}  // namespace minipipe::cli
