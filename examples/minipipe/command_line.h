#pragma once
// The `minipipe` command line parsed into the option structs of commands.h. Apart from
// main() so that the fuzzer (tests/fuzz) can drive the parser alone.
#include <iosfwd>

#include "commands.h"

namespace minipipe::cli {

enum class Command { TrainCnn, TrainGpt, SampleGpt, Eval, Info, Simulate, Explain, Report, Partition, Plan, PlanSlices };

struct CommandLine {
  Command command = Command::Info;
  CnnOptions cnn;
  GptOptions gpt;
  SampleOptions sample;
  EvalOptions eval;
  SimulateOptions simulate;
  ExplainOptions explain;
  ReportOptions report;
  PartitionOptions partition;
  PlanOptions plan;
  PlanSlicesOptions plan_slices;
};

// True with `parsed` filled when a command is to run. False when parsing ends the program:
// --help (printed to `out`) or a bad command line (one line to `err`), with the exit status
// to return.
bool parse_command_line(int argc, const char* const* argv, CommandLine& parsed, int& exit_status, std::ostream& out,
                        std::ostream& err);

}  // namespace minipipe::cli
