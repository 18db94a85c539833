#pragma once
// The `minipipe` subcommands, behind plain option structs (main.cpp parses the command
// line with CLI11; nothing else includes it).
#include <cstdint>
#include <string>

namespace minipipe::cli {

// How a training run is cut into a pipeline (issue: pipeline core; DESIGN.md decision 5).
struct PipelineFlags {
  int stages = 1;
  int micro_batches = 1;
  std::string schedule = "gpipe";     // gpipe | 1f1b | interleaved | pipedream
  std::string schedule_file;          // a PyTorch schedule CSV instead (it sets stages, micro-batches, chunks)
  int virtual_stages = 1;             // interleaved: model chunks per stage (the model is cut into stages x this)
  std::string weights;                // pipedream: stash (default) | vertical-sync | none | 2bw
  std::string partition = "uniform";  // uniform | params | time | 3,3,2
  std::string plan;                   // "auto": stages (and, under pipedream, replicas) by PipeDream's planner
  std::string replicas;               // pipedream: replicas per stage, like 2,1 (empty: one each)
  std::string recompute = "never";    // never | always | except_last
  std::string token_slices;           // gpt: N uniform token slices, or "auto" (TeraPipe's planner); empty: none
  std::string costs_from;             // zb-auto: a trace of the same stages to take each stage's costs from
  int max_in_flight = 0;              // zb-auto: most micro-batches in flight per stage (0: K)
  bool profile = false;               // time every CPU kernel of the training steps (kernels/profile.h)
  std::string stage_devices;          // cpu,cpu,... (empty: every stage on --device)
  bool deferred_batch_norm = false;   // BatchNorm's running statistics by the whole mini-batch (torchgpipe)
  double status_after = 600;          // seconds: print where every stage is when a call runs longer (0: never)
  int threads = 1;                    // CPU kernel threads per stage
  std::string trace, timeline;        // Chrome-trace JSON and SVG of the last step
  bool untimed = false;               // no per-instruction timing: GPU stages run ahead of their streams
  int data_parallel = 1;              // under mpirun: pipeline replicas, each on a shard of every mini-batch
  double rank_timeout = 600;          // under mpirun: seconds a stage waits for a neighbour before failing (0: forever)
  double link_latency_us = 0;         // an injected link between stages: latency per message,
  double link_gbps = 0;               // and bandwidth (0: the machine's)
  std::string command_line;           // the whole command, which every process of an mpirun must share
};

struct TrainOptions {
  std::string device = "cpu";
  int64_t steps = 0;          // 0: the model's default
  int64_t epochs = 0;         // CNN only; overrides steps when set
  int64_t batch_size = 0;     // 0: the model's default
  float learning_rate = 0.0f; // 0: the model's default
  uint64_t seed = 0;
  std::string data;           // empty: the bundled data
  std::string save, resume, log_json;
  int64_t eval_interval = 0;  // 0: the model's default
  int64_t stop_after = 0;     // stop (and save) after this many steps of this run; 0: run to the end
  // Stop at the first evaluation that reaches this (time to target, as in PipeDream's
  // evaluation, section 5); 0: none. Accuracy is a fraction, and only the CNN reports one.
  double target_loss = 0, target_accuracy = 0;
  int64_t memory_limit_mib = 0;  // the most the run may plan to use; 0: the machine's available memory
  PipelineFlags pipeline;
};

struct CnnOptions : TrainOptions {
  int64_t width = 16;
  int64_t blocks_per_stage = 1;
};

struct GptOptions : TrainOptions {
  int64_t dim = 128, layers = 4, heads = 4, context = 128;
  // Off by default: the 5-minute default run sees each byte about 3 times and does not
  // overfit, and dropout slows its descent (measured: 2.30 vs 2.05 nats/byte at step 400).
  float dropout = 0.0f;
  bool tie_embeddings = false;
  int64_t sample_length = 200;  // bytes printed after training (0: none)
};

struct SampleOptions {
  std::string checkpoint, prompt = "Tom ";
  int64_t length = 300;
  float temperature = 0.8f;
  uint64_t seed = 0;
};

// `minipipe eval`: a saved model's validation loss, as training computes it.
struct EvalOptions {
  std::string model = "gpt";  // gpt | cnn
  std::string checkpoint, data, device = "cpu";
  int64_t batch_size = 0;     // gpt: windows per batch (0: what training used, from the file)
  bool json = false;
};

struct SimulateOptions {
  int stages = 4, micro_batches = 8, token_slices = 1;
  int virtual_stages = 1;         // interleaved: model chunks per stage
  std::string schedule = "gpipe";
  std::string schedule_file;      // a PyTorch schedule CSV instead (it sets stages, micro-batches, chunks)
  std::string export_schedule;    // write the schedule as a PyTorch schedule CSV here
  int mini_batches = 8;           // pipedream: mini-batches streamed (each of micro_batches)
  std::string weights;            // pipedream: stash (default) | vertical-sync | none | 2bw
  std::string replicas;           // pipedream: replicas per stage, like 2,1
  double forward_cost = 1.0, backward_cost = 2.0;
  double weight_cost = -1.0;        // W's part of the backward (zero bubble); negative: half of it
  double communication_cost = 0.0;  // of one message between stages, in the costs' unit
  bool grid = false, json = false;
  std::string timeline, trace;
  std::string compare;  // a trace of `train --trace` to predict from its own costs and compare with
  std::string costs_from;  // zb-auto: a trace of the same stages to take each stage's costs from
  int max_in_flight = 0;   // zb-auto: most micro-batches in flight per stage (0: K)
  std::string bubble_chart;  // instead: the bubble against M = 1..micro_batches per schedule, as an SVG here
  std::string versions_chart;  // pipedream: the weight versions each stage holds over time, as an SVG here
  std::string memory_chart;    // the micro-batches whose activations each stage holds over time, as an SVG here
};

// `minipipe explain RUN.jsonl TRACE.json`: where each stage's time went in the traced step.
struct ExplainOptions {
  std::string log, trace;
  std::string memory_chart;  // the bytes each stage held over the traced step, as an SVG here
  bool json = false;
};

// `minipipe report RUN.jsonl [TRACE.json] -o report.html`: one self-contained HTML page.
struct ReportOptions {
  std::string log, trace, output = "report.html";
  double memory_budget_mib = 0;  // above 0: score the run against this per-stage budget (the course's capstone)
};

struct PartitionOptions {
  std::string model = "gpt";
  int stages = 2;
  std::string method = "uniform";
  int64_t batch_size = 16;
};

// PipeDream's planner on the profiled example model (section 3.1).
struct PlanOptions {
  std::string model = "gpt";
  int workers = 2;
  int64_t batch_size = 16;
  double bandwidth_gb_per_second = 5.0, latency_us = 0.0;
  int64_t memory_mib = 0;  // per worker; 0: no limit
  int most_replicas = 0;   // per stage; 0: any
};

// TeraPipe's slice planner on a GPT of the given shape, measured on this machine (section 3.3).
struct PlanSlicesOptions {
  std::string model = "gpt";
  int64_t context = 1024, batch_size = 1, dim = 128, layers = 0, heads = 4;  // layers 0: two per stage
  int stages = 4;
  int64_t granularity = 0;  // tokens; 0: context / 64
  int repeats = 3;
  int64_t memory_limit_mib = 0;  // 0: the machine's available memory
  bool json = false;
};

int train_cnn(const CnnOptions& options);
int train_gpt(const GptOptions& options);
int sample_gpt(const SampleOptions& options);
int evaluate(const EvalOptions& options);
int print_info();
int simulate(const SimulateOptions& options);
int explain(const ExplainOptions& options);
int report(const ReportOptions& options);
int partition(const PartitionOptions& options);
int plan(const PlanOptions& options);
int plan_slices(const PlanSlicesOptions& options);

// Where the bundled data lives: $MINIPIPE_DATA_DIR, else the source tree's data/, else the
// installed copy.
std::string data_directory();

}  // namespace minipipe::cli
