// `minipipe`: parses the command line (command_line.cpp) and runs the command, turning any
// error into one line.
#include <cstdio>
#include <exception>
#include <iostream>
#include <new>

#include <unistd.h>

#include "command_line.h"
#include "pipeline/process_group.h"

using namespace minipipe::cli;

namespace {

int run(const CommandLine& line) {
  switch (line.command) {
    case Command::TrainCnn: return train_cnn(line.cnn);
    case Command::TrainGpt: return train_gpt(line.gpt);
    case Command::SampleGpt: return sample_gpt(line.sample);
    case Command::Eval: return evaluate(line.eval);
    case Command::Info: return print_info();
    case Command::Simulate: return simulate(line.simulate);
    case Command::Explain: return explain(line.explain);
    case Command::Report: return report(line.report);
    case Command::Partition: return partition(line.partition);
    case Command::Plan: return plan(line.plan);
    case Command::PlanSlices: return plan_slices(line.plan_slices);
  }
  return 0;
}

FILE* errors = stderr;  // where a failure is told

// Under mpirun every process runs the same command. Rank 0 alone prints progress, the sample
// and writes the log; every rank writes its share of a checkpoint (and takes part in the
// sample: each holds only its layers); the others print only their errors.
void leave_output_to_rank_zero(int argc, char** argv, CommandLine& line) {
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  line.gpt.pipeline.command_line = line.cnn.pipeline.command_line = command;
  if (!minipipe::pipeline::launched_by_mpirun() || minipipe::pipeline::rank_from_launcher() == 0) return;
  for (TrainOptions* options : {static_cast<TrainOptions*>(&line.gpt), static_cast<TrainOptions*>(&line.cnn)})
    options->log_json.clear();
  const int error_fd = dup(fileno(stderr));
  if (FILE* kept = error_fd >= 0 ? fdopen(error_fd, "w") : nullptr) errors = kept;
  if (!std::freopen("/dev/null", "w", stdout) || !std::freopen("/dev/null", "w", stderr))
    std::fprintf(errors, "minipipe: note: could not silence rank %d's progress\n", minipipe::pipeline::rank_from_launcher());
}

// Which process failed, when there are several.
std::string where() {
  if (!minipipe::pipeline::launched_by_mpirun()) return "";
  return " (rank " + std::to_string(minipipe::pipeline::rank_from_launcher()) + ")";
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine line;
  int exit_status = 0;
  if (!parse_command_line(argc, argv, line, exit_status, std::cout, std::cerr)) return exit_status;
  leave_output_to_rank_zero(argc, argv, line);
  try {
    return run(line);
  } catch (const std::bad_alloc&) {
    std::fprintf(errors, "minipipe: error%s: out of memory; lower the model or batch sizes (or --micro-batches' share)\n",
                 where().c_str());
  } catch (const std::exception& error) {
    std::fprintf(errors, "minipipe: error%s: %s\n", where().c_str(), error.what());
  }
  std::fflush(errors);
  minipipe::pipeline::abort_every_process_if_launched(1);  // the other processes would wait for this one
  return 1;
}
