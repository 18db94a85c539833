#pragma once
// What one Pipeline::run shares between its worker threads (pipeline/stage_worker.h): the
// channels between neighbouring workers, the all-reduces of replicated stages, the mailbox of
// skip connections, the first failure, and where every worker is, which the status report
// (pipeline/status.h) reads while the run goes on.
#include <atomic>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pipeline/channel.h"
#include "pipeline/replica_all_reduce.h"
#include "pipeline/schedule.h"

namespace minipipe::pipeline {

// Where one worker is; written by the worker only.
struct WorkerProgress {
  std::atomic<int> position{-1};     // the instruction under way, or -1 before the first
  std::atomic<bool> waiting{false};  // blocked in a receive or an AllReduce
  std::atomic<int> in_flight{0};     // units forwarded and not yet backwarded
  std::atomic<bool> done{false};
};

struct RunState {
  std::chrono::steady_clock::time_point origin = std::chrono::steady_clock::now();  // traces count from here
  std::vector<std::unique_ptr<WorkerProgress>> progress;                            // per worker
  std::map<Schedule::ChannelKey, std::unique_ptr<Channel>> channels;                // Schedule::channel_of
  std::vector<std::unique_ptr<ReplicaAllReduce>> all_reduces;  // per stage; null with one replica
  Mailbox skips;                                               // skip connections across stages
  // Across processes, the skip routes between this process's stage and another's, by (route,
  // gradient); the routes within this process use the mailbox.
  std::map<std::pair<int, bool>, std::unique_ptr<Channel>> remote_skips;
  std::mutex error_mutex;
  std::exception_ptr error;
  int error_worker = -1;
  Instruction error_instruction{Op::OptimizerStep, -1};

  // The first failure is the one reported; every channel closes, so that no worker waits on
  // the failed one for ever.
  void fail(int worker, Instruction instruction, std::exception_ptr e);
};

// "pipeline status, 2.00 s into the run:" and a line per worker, like "stage 1: instruction 7
// of 20, ReceiveGradient of micro-batch 2, waiting for the gradient from stage 2; 2 in flight".
std::string describe_progress(const Schedule& schedule, const RunState& state, double seconds);

}  // namespace minipipe::pipeline
