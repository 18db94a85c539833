#pragma once
// How many threads the CPU kernels of the calling thread may use (DESIGN.md decision 3).
// One by default, so that a pipeline stage is one core and a K-stage pipeline on K cores
// measures pipelining rather than the kernels' own parallelism; a stage (or a program that
// is no pipeline) may ask for more. The count is per calling thread: each stage thread
// sets its own.
//
// Only the GEMMs use more than one thread: they are three quarters of a step of the GPT
// and of the ResNet on a CPU, and they split into parts that compute every element exactly
// as one thread would (the same additions in the same order), so the results do not depend
// on the thread count.
#include <functional>

namespace minipipe::kernels::cpu {

constexpr int kMaxKernelThreads = 1024;

int kernel_threads();             // of the calling thread; 1 unless set
void set_kernel_threads(int threads);  // throws std::invalid_argument unless 1 <= threads <= kMaxKernelThreads
bool kernel_threads_supported();  // built with OpenMP; without it every kernel runs on one thread

// Sets the calling thread's count for a scope and restores the previous one after.
class KernelThreads {
 public:
  explicit KernelThreads(int threads);
  ~KernelThreads();
  KernelThreads(const KernelThreads&) = delete;
  KernelThreads& operator=(const KernelThreads&) = delete;

 private:
  int previous_;
};

// Calls part(p) for every p in [0, parts), spread over up to kernel_threads() threads (the
// calling thread among them), and returns when all calls have returned; the first exception
// a call throws is rethrown here. Inside part, kernel_threads() is 1: nothing nests.
void parallel_parts(int parts, const std::function<void(int part)>& part);

}  // namespace minipipe::kernels::cpu
