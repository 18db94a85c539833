#pragma once
// Force-included (g++ -include) into every kernels/cuda/*.cu file when the CUDA emulation
// build compiles them as plain C++ for the CPU (see run.sh). It supplies what nvcc would:
// the thread and block indices, __syncthreads, warp shuffles, atomicAdd and the device math
// functions, and emu::launch, which run.sh's nvcc stand-in puts where the source says
// kernel<<<grid, block, shared, stream>>>(args).
//
// A launch queues the kernel on its stream (fake_runtime.cpp runs each stream's work in
// order on a worker thread of its own) and returns. There, each block's threads are fibers
// (ucontext), switched at __syncthreads and shuffles, so that the block-wide reductions run
// as written; blocks run one after another. This checks the kernels' indexing and
// arithmetic against the CPU, and stream ordering, but not races within a kernel or the GPU
// memory model.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <tuple>
#include <mutex>
#include <stdexcept>
#include <vector>

#include <csetjmp>
#include <ucontext.h>

#include "emulated_streams.h"

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// Blocks run one at a time (see emu::run_blocks), so one static array serves every block.
#define __shared__ static

namespace emu {

// A fiber is one emulated thread index of a block, kept for the life of the OS thread (the
// stream's worker) and reused by every block and launch: it is created once with ucontext and
// after that entered only by _longjmp, which, unlike getcontext and swapcontext, makes no
// system call. (Creating each block's fibers anew spent half the emulator's time in those
// calls' signal-mask system calls.) A fiber loops: run the current launch's kernel for its
// thread index, mark itself finished, jump back to the scheduler, and wait there to be
// resumed for the next block.
struct Fiber {
  jmp_buf jump;             // where the scheduler resumes it: a barrier, or the end of its loop
  bool created = false;     // entered once through its ucontext
  unsigned index = 0;       // its threadIdx.x
  unsigned shuffles = 0;    // of the current block
  bool finished = false;    // with the current block
};

struct BlockRun {
  ucontext_t scheduler_context;
  jmp_buf scheduler_jump;
  Fiber* running = nullptr;
  std::vector<float> exchange[2];  // shuffles: one slot per thread, alternating buffers
  bool any_waited = false;
  void (*kernel_call)() = nullptr;  // runs the launch's kernel for the current threadIdx
};

// Null while threads run as plain calls (kernels without barriers).
inline thread_local BlockRun* current_block = nullptr;

// Fiber stacks, made once per OS thread and left uninitialised (untouched pages cost nothing).
constexpr std::size_t kFiberStackBytes = 64 * 1024;
inline char* fiber_stack(unsigned thread) {
  thread_local std::vector<std::unique_ptr<char[]>> stacks;
  while (stacks.size() <= thread) stacks.emplace_back(new char[kFiberStackBytes]);
  return stacks[thread].get();
}

// This OS thread's fibers, one per thread index (each on its own stack; never moved, since a
// jmp_buf into them must stay valid).
inline Fiber& fiber(unsigned thread) {
  thread_local std::vector<std::unique_ptr<Fiber>> fibers;
  while (fibers.size() <= thread) fibers.push_back(std::make_unique<Fiber>());
  return *fibers[thread];
}

// The body of every fiber; the first entry comes through makecontext.
[[noreturn]] inline void fiber_loop() {
  for (;;) {
    current_block->kernel_call();
    Fiber* self = current_block->running;
    self->finished = true;
    if (_setjmp(self->jump) == 0) _longjmp(current_block->scheduler_jump, 1);
  }
}

}  // namespace emu

inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

// Yields to the block's scheduler until every unfinished thread of the block has arrived.
inline void __syncthreads() {
  if (!emu::current_block) {
    std::fputs("emulated __syncthreads: reached by a kernel whose first thread never was\n", stderr);
    std::abort();
  }
  emu::BlockRun& block = *emu::current_block;
  block.any_waited = true;
  emu::Fiber* self = block.running;
  if (_setjmp(self->jump) == 0) _longjmp(block.scheduler_jump, 1);
  threadIdx.x = self->index;  // fibers share the OS thread's thread_locals
}

// Every thread of the block takes part in each shuffle (true of launch.cuh's reductions, the
// only callers), so a block barrier between writing and reading is enough; successive
// shuffles alternate buffers, so that a fast thread's next write cannot clobber a slot a
// slow one has still to read.
inline float __shfl_xor_sync(unsigned, float value, int lane_mask) {
  emu::BlockRun& block = *emu::current_block;
  const unsigned self = threadIdx.x;
  std::vector<float>& exchange = block.exchange[block.running->shuffles++ % 2];
  exchange[self] = value;
  __syncthreads();
  return exchange[self ^ static_cast<unsigned>(lane_mask)];
}

inline float atomicAdd(float* address, float value) {
  std::atomic_ref<float> target(*address);
  float old = target.load();
  while (!target.compare_exchange_weak(old, old + value)) {
  }
  return old;
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __fmul_rn(float a, float b) { return a * b; }
template <class T>
inline T min(T a, T b) { return a < b ? a : b; }
template <class T>
inline T max(T a, T b) { return a > b ? a : b; }

namespace emu {

inline std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}


// Runs a kernel's blocks, on the stream's worker thread. The first block runs as fibers; if
// none of its threads ever waits at a barrier, the other blocks' threads run as plain calls,
// one after another, which is much faster.
template <class... Parameters>
void run_blocks(void (*kernel)(Parameters...), dim3 grid, dim3 block, const std::tuple<Parameters...>& bound) {
  std::lock_guard lock(launch_mutex());  // the static __shared__ arrays belong to one launch
  static thread_local const std::tuple<Parameters...>* arguments = nullptr;
  static thread_local void (*body)(Parameters...) = nullptr;
  arguments = &bound;
  body = kernel;
  gridDim = grid;
  blockDim = block;
  bool needs_fibers = true;
  for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      blockIdx = uint3{bx, by, 0};
      if (!needs_fibers) {
        for (unsigned t = 0; t < block.x; ++t) {
          threadIdx = uint3{t, 0, 0};
          std::apply(kernel, bound);
        }
        continue;
      }
      const auto owner = std::make_unique<BlockRun>();  // not an automatic object: see _setjmp
      BlockRun& run = *owner;
      run.kernel_call = +[] { std::apply(body, *arguments); };
      run.exchange[0].assign(block.x, 0.0f);
      run.exchange[1].assign(block.x, 0.0f);
      current_block = &run;
      for (unsigned t = 0; t < block.x; ++t) {
        Fiber& f = fiber(t);
        f.index = t;
        f.shuffles = 0;
        f.finished = false;
      }
      // Each round runs every unfinished thread until it finishes or reaches a barrier;
      // then all unfinished threads wait there, and the barrier opens.
      for (bool all_finished = false; !all_finished;) {
        all_finished = true;
        for (unsigned t = 0; t < block.x; ++t) {
          Fiber& f = fiber(t);
          if (f.finished) continue;
          run.running = &f;
          threadIdx = uint3{f.index, 0, 0};
          if (_setjmp(run.scheduler_jump) == 0) {
            if (f.created) _longjmp(f.jump, 1);
            f.created = true;
            ucontext_t context;
            getcontext(&context);
            context.uc_stack.ss_sp = fiber_stack(t);
            context.uc_stack.ss_size = kFiberStackBytes;
            context.uc_link = nullptr;
            makecontext(&context, fiber_loop, 0);
            swapcontext(&run.scheduler_context, &context);
          }
          all_finished = all_finished && f.finished;
        }
      }
      current_block = nullptr;
      needs_fibers = run.any_waited;
    }
}

// What a kernel<<<grid, block, shared, stream>>>(args) launch becomes (`name` is the kernel
// expression of the source): the arguments are copied now, as CUDA does, and the kernel is
// queued on the stream. Its pointer arguments are the blocks it uses: const ones it reads,
// the others it writes.
template <class... Parameters, class... Arguments>
void launch(const char* name, void (*kernel)(Parameters...), dim3 grid, dim3 block, std::size_t, cudaStream_t stream,
            Arguments&&... args) {
  if (block.x == 0 || block.x > 1024 || block.y != 1 || block.z != 1 || grid.x == 0 || grid.y == 0 || grid.y > 65535 ||
      grid.z != 1)
    throw std::invalid_argument("emulated launch: unsupported shape");
  std::tuple<Parameters...> bound(static_cast<Parameters>(args)...);
  std::vector<Use> uses;
  std::apply([&](const auto&... argument) {
    const auto add = [&](const auto& value) {
      using T = std::decay_t<decltype(value)>;
      if constexpr (std::is_pointer_v<T>) uses.push_back({value, !std::is_const_v<std::remove_pointer_t<T>>});
    };
    (add(argument), ...);
  }, bound);
  enqueue(stream, uses, name, [kernel, grid, block, bound = std::move(bound)] { run_blocks(kernel, grid, block, bound); });
}

}  // namespace emu
