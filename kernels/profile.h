#pragma once
// Where a training step's time goes, kernel by kernel (issue: CPU speed measured honestly).
// While profiling is on, every kernel that dispatch.cpp runs on the CPU adds its wall time to
// the calling thread's tally under (phase, kernel): the phase is what the thread is doing,
// "forward" unless a scope says otherwise (the autograd engine's backward says "backward", W
// of a split backward "backward W"), the kernel the dispatch entry's name (gemm,
// softmax_forward, ...). Off, a kernel call costs one relaxed atomic load more. The tallies of
// every thread that ran a kernel are added up on demand. GPU kernels run asynchronously and are
// not timed here.
#include <cstdint>
#include <string>
#include <vector>

namespace minipipe::kernels {

void set_profiling(bool on);
bool profiling();

struct KernelTime {
  std::string phase, kernel;
  int64_t calls = 0;
  double seconds = 0;
};
// Every thread's tallies since the last reset, added up; the largest first.
std::vector<KernelTime> kernel_profile();
void reset_kernel_profile();

// The calling thread's phase for the scope's duration (scopes nest).
class ProfilePhase {
 public:
  explicit ProfilePhase(const char* phase);
  ~ProfilePhase();
  ProfilePhase(const ProfilePhase&) = delete;
  ProfilePhase& operator=(const ProfilePhase&) = delete;

 private:
  const char* previous_;
};

// Times one kernel call into the calling thread's tally, when profiling is on.
class KernelTimer {
 public:
  explicit KernelTimer(const char* kernel);
  ~KernelTimer();
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;

 private:
  const char* kernel_;
  int64_t start_ns_ = -1;  // -1: not timing
};

}  // namespace minipipe::kernels
