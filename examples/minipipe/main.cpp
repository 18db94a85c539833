// `minipipe`: parses the command line (command_line.cpp) and runs the command, turning any
// error into one line.
#include <cstdio>
#include <exception>
#include <iostream>
#include <new>

#include "command_line.h"

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
    case Command::Partition: return partition(line.partition);
    case Command::Plan: return plan(line.plan);
    case Command::PlanSlices: return plan_slices(line.plan_slices);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine line;
  int exit_status = 0;
  if (!parse_command_line(argc, argv, line, exit_status, std::cout, std::cerr)) return exit_status;
  try {
    return run(line);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "minipipe: error: out of memory; lower the model or batch sizes (or --micro-batches' share)\n");
    return 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "minipipe: error: %s\n", error.what());
    return 1;
  }
}
