#pragma once
// The pipeline's stage threads (DESIGN.md decision 6), one per stage, started on the first
// step and kept until the pipeline is destroyed. Keeping them matters on a GPU: a thread's
// per-thread default stream, its cuBLAS handles and the blocks the caching allocator keeps for
// its stream all belong to the thread, so threads made afresh every step would make fresh
// handles (cublasCreate) and fresh cudaMallocs every step too.
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace minipipe::pipeline {

class StageThreads {
 public:
  explicit StageThreads(int stages) : stages_(stages) {}
  ~StageThreads();
  StageThreads(const StageThreads&) = delete;
  StageThreads& operator=(const StageThreads&) = delete;

  // Calls job(s) on stage s's thread for every stage at once and returns when all have
  // returned; rethrows the first exception a job let out. One run at a time.
  void run(const std::function<void(int stage)>& job);

 private:
  void serve(int stage);

  const int stages_;
  std::vector<std::thread> threads_;  // started by the first run
  std::mutex mutex_;
  std::condition_variable work_posted_, work_done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t round_ = 0;  // counts runs: a thread takes each round's job once
  int busy_ = 0;        // threads still in this round's job
  bool stopping_ = false;
  std::exception_ptr error_;
};

}  // namespace minipipe::pipeline
