#include "kernels/cpu/threads.h"

#include <algorithm>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace minipipe::kernels::cpu {

namespace {
thread_local int current_threads = 1;
}

int kernel_threads() { return current_threads; }

void set_kernel_threads(int threads) {
  if (threads < 1 || threads > kMaxKernelThreads)
    throw std::invalid_argument("kernel threads must be between 1 and " + std::to_string(kMaxKernelThreads) +
                                ", got " + std::to_string(threads));
  current_threads = threads;
}

bool kernel_threads_supported() {
#if defined(_OPENMP)
  return true;
#else
  return false;
#endif
}

KernelThreads::KernelThreads(int threads) : previous_(current_threads) { set_kernel_threads(threads); }
KernelThreads::~KernelThreads() { current_threads = previous_; }

void parallel_parts(int parts, const std::function<void(int part)>& part) {
#if defined(_OPENMP)
  if (const int threads = std::min(current_threads, parts); threads > 1) {
    // Each thread that opens a parallel region gets its own team from libgomp, so stage
    // threads asking for more threads at once do not share (or wait for) one pool.
    std::exception_ptr error;
    std::mutex error_mutex;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int p = 0; p < parts; ++p) {
      try {
        KernelThreads serial(1);
        part(p);
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
#endif
  KernelThreads serial(1);
  for (int p = 0; p < parts; ++p) part(p);
}

void parallel_ranges(int64_t count, int64_t work_per_item,
                     const std::function<void(int64_t begin, int64_t end)>& range) {
  if (count <= 0) return;
  const int64_t work = count * std::max<int64_t>(work_per_item, 1);
  const int64_t parts = std::min<int64_t>({current_threads, count, work / kMinimumParallelWork});
  if (parts <= 1) return range(0, count);
  parallel_parts(static_cast<int>(parts), [&](int part) { range(count * part / parts, count * (part + 1) / parts); });
}

}  // namespace minipipe::kernels::cpu
