#pragma once
// How many threads the CPU kernels of the calling thread may use (DESIGN.md decision 3).
// One by default, so that a pipeline stage is one core and a K-stage pipeline on K cores
// measures pipelining rather than the kernels' own parallelism; a stage (or a program that
// is no pipeline) may ask for more. The count is per calling thread: each stage thread
// sets its own.
//
// Every kernel splits its work only into parts that compute each output exactly as one
// thread would (the same additions in the same order): GEMMs into bands of the result
// (gemm.cpp), row kernels into ranges of rows, elementwise kernels into ranges of elements,
// column sums into bands of columns, convolutions into groups of images (their dW summed in
// an order fixed by the shapes, autograd/convolution.cpp). So the results do not depend on
// the thread count (except for GEMMs without AVX-512: Eigen's blocking, and its last bits,
// follow the band).
#include <cstdint>
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

// Below this much work (count * work_per_item, about the floats read and written) a loop
// stays on the calling thread: a parallel region costs microseconds, as much as ~16K floats
// of memory-bound work.
constexpr int64_t kMinimumParallelWork = int64_t{1} << 15;

// Calls range(begin, end) on consecutive ranges that cover [0, count), one per thread, or
// range(0, count) alone when the calling thread has one kernel thread or the loop is smaller
// than kMinimumParallelWork. For loops whose items are independent (each writes only its own
// outputs), so that where the ranges are cut does not change any result.
void parallel_ranges(int64_t count, int64_t work_per_item,
                     const std::function<void(int64_t begin, int64_t end)>& range);

// parallel_ranges one item at a time: item(i) for every i in [0, count).
template <class Item>
void parallel_for(int64_t count, int64_t work_per_item, Item item) {
  parallel_ranges(count, work_per_item, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) item(i);
  });
}

}  // namespace minipipe::kernels::cpu
