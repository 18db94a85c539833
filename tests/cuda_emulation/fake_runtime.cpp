// The CUDA runtime and cuBLAS calls minipipe makes, implemented on the CPU for the CUDA
// emulation build (see run.sh): "device" memory is host memory and SGEMM is a plain
// column-major loop, which checks the row/column swap in kernels/cuda/gemm.cpp. Two emulated
// devices, cuda:0 and cuda:1 (MINIPIPE_EMULATED_GPUS sets another count), so that peer copies
// and pipelines across GPUs run too.
//
// Streams are asynchronous, as on a GPU: each stream is a queue that a worker thread of its
// own runs in order, and a kernel launch, a cuBLAS call or a copy only queues its work. The
// host races ahead of the device, so a missing synchronisation (a tensor read on one stream
// while another stream still writes it, a host read before the copy ran, a block reused
// before its last reader ran) gives wrong or poisoned values that the tests catch.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "emulated_streams.h"

namespace {
thread_local int current_device = 0;

int emulated_devices() {
  static const int count = [] {
    const char* value = std::getenv("MINIPIPE_EMULATED_GPUS");
    return value ? std::atoi(value) : 2;
  }();
  return count;
}

bool exists(int device) { return device >= 0 && device < emulated_devices(); }
thread_local cudaError_t last_error = cudaSuccess;

cudaError_t fail(cudaError_t error) {
  last_error = error;
  return error;
}

using Clock = std::chrono::steady_clock;

// An emulated stream: work runs in the order it was queued, on a worker thread, after the
// call that queued it has returned.
//
// MINIPIPE_EMULATED_SYNCHRONOUS=1 makes every call wait for its work, as if the device were
// infinitely fast: a test that fails without it and passes with it lacks a synchronisation.
class StreamQueue {
 public:
  StreamQueue();
  ~StreamQueue();  // runs what is queued, then stops
  StreamQueue(const StreamQueue&) = delete;
  StreamQueue& operator=(const StreamQueue&) = delete;

  void enqueue(std::function<void()> work) {
    {
      std::lock_guard lock(mutex_);
      work_.push_back(std::move(work));
    }
    changed_.notify_all();
    if (synchronous()) drain();
  }
  // Returns when everything queued before the call has run.
  void drain() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return work_.empty() && !busy_; });
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return stopping_ || !work_.empty(); });
      if (work_.empty()) return;
      std::function<void()> work = std::move(work_.front());
      work_.pop_front();
      busy_ = true;
      lock.unlock();
      if (jitter_us() > 0) std::this_thread::sleep_for(std::chrono::microseconds(random_delay_us()));
      work();
      lock.lock();
      busy_ = false;
      changed_.notify_all();
    }
  }

  // MINIPIPE_EMULATED_JITTER_US=N delays each piece of work by up to N microseconds, at
  // random, so that work stays pending longer and in varied interleavings: the hazard check
  // below then sees more of the orderings a real GPU might produce.
  static int jitter_us() {
    static const int value = [] {
      const char* set = std::getenv("MINIPIPE_EMULATED_JITTER_US");
      return set ? std::atoi(set) : 0;
    }();
    return value;
  }
  static int random_delay_us() {
    thread_local uint64_t state = std::hash<std::thread::id>()(std::this_thread::get_id()) | 1;
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;  // xorshift64
    return static_cast<int>(state % static_cast<uint64_t>(jitter_us() + 1));
  }

  static bool synchronous() {
    static const bool value = [] {
      const char* set = std::getenv("MINIPIPE_EMULATED_SYNCHRONOUS");
      return set && std::string(set) == "1";
    }();
    return value;
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::function<void()>> work_;
  bool busy_ = false, stopping_ = false;
  std::thread worker_;
};

// Every live stream, so that cudaFree can wait for all of them, as the real one does.
struct AllStreams {
  std::mutex mutex;
  std::set<StreamQueue*> live;
};
AllStreams& all_streams() {
  static AllStreams* all = new AllStreams;  // never destroyed: threads' streams die after main()
  return *all;
}

void forget_stream(const StreamQueue* queue);  // in the hazard check, below

StreamQueue::StreamQueue() : worker_([this] { run(); }) {
  std::lock_guard lock(all_streams().mutex);
  all_streams().live.insert(this);
}
StreamQueue::~StreamQueue() {
  {
    std::lock_guard lock(all_streams().mutex);
    all_streams().live.erase(this);
  }
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
  forget_stream(this);
}

void synchronize_every_stream() {
  std::lock_guard lock(all_streams().mutex);
  for (StreamQueue* queue : all_streams().live) queue->drain();
}

// The queue behind a stream handle: a stream made by cudaStreamCreate*, the calling thread's
// per-thread default stream on the current device, or the device's legacy default stream
// (which, unlike a real one, does not wait for the other streams: minipipe never uses it).
StreamQueue& queue_for(cudaStream_t stream) {
  if (stream == cudaStreamPerThread) {
    thread_local std::map<int, std::unique_ptr<StreamQueue>> per_thread;
    std::unique_ptr<StreamQueue>& queue = per_thread[current_device];
    if (!queue) queue = std::make_unique<StreamQueue>();
    return *queue;
  }
  if (stream == nullptr || stream == cudaStreamLegacy) {
    static std::mutex mutex;
    static auto* legacy = new std::map<int, std::unique_ptr<StreamQueue>>;  // never destroyed, as above
    std::lock_guard lock(mutex);
    std::unique_ptr<StreamQueue>& queue = (*legacy)[current_device];
    if (!queue) queue = std::make_unique<StreamQueue>();
    return *queue;
  }
  return *reinterpret_cast<StreamQueue*>(stream);
}

// For each stream, how much of each other stream's work is ordered before the work it queues
// next: stream -> that stream's work count (see the hazard check below).
using StreamClock = std::map<const StreamQueue*, uint64_t>;

// An event is a count of the times it was recorded and of the records its stream has reached.
struct EventState {
  std::mutex mutex;
  std::condition_variable reached;
  uint64_t recorded = 0, completed = 0;
  Clock::time_point time = Clock::now();
  StreamClock clock;  // what the latest record comes after: a stream that waits for it inherits this

  void wait_for(uint64_t record) {
    std::unique_lock lock(mutex);
    reached.wait(lock, [&] { return completed >= record; });
  }
};
using EventHandle = std::shared_ptr<EventState>;  // shared with the queued work that records it
EventHandle& event_of(cudaEvent_t event) { return *reinterpret_cast<EventHandle*>(event); }

// The hazard check. Every kernel, GEMM and copy declares the device blocks it reads and
// writes (a kernel's const pointer arguments are reads, the others writes); a use stays
// pending until its work has run. A new use of a block that another stream still has a
// pending use of, one of the two writing, is a race on a GPU unless something orders the
// two: a host wait (then the other use has run and is no longer pending), or an event the
// new use's stream waits for (cudaStreamWaitEvent) that was recorded after the other use.
// Each stream's clock says how far it is ordered after each other stream (a vector clock:
// waiting for an event takes the recording stream's position and its clock too). A race
// aborts, naming both. A pointer into no device block is a host pointer, which a GPU kernel
// cannot read: that aborts too.
struct PendingUse {
  StreamQueue* queue;
  uint64_t position;  // in its stream's checked work
  bool write;
  uint64_t work;
  std::string what;
};
struct DeviceBlocks {
  std::mutex mutex;
  std::map<const char*, std::size_t> sizes;  // start -> bytes, of every cudaMalloc block
  std::map<const char*, std::vector<PendingUse>> pending;
  uint64_t next_work = 1;
  std::map<const StreamQueue*, uint64_t> queued;  // checked work queued on each stream so far
  std::map<const StreamQueue*, StreamClock> clocks;

  const char* block_of(const void* pointer) const {
    const char* p = static_cast<const char*>(pointer);
    auto it = sizes.upper_bound(p);
    if (it == sizes.begin()) return nullptr;
    --it;
    return p < it->first + it->second ? it->first : nullptr;
  }
};
DeviceBlocks& device_blocks() {
  static DeviceBlocks* blocks = new DeviceBlocks;  // never destroyed, as above
  return *blocks;
}

// MINIPIPE_EMULATED_LEAK_CHECK=1: at exit, after the program's own exit handlers (this one is
// registered when the library loads, before them), blocks that were never freed are reported
// and the process exits with status 9, as compute-sanitizer --leak-check full
// --error-exitcode 9 would on a GPU.
const bool leak_check_registered = [] {
  const char* set = std::getenv("MINIPIPE_EMULATED_LEAK_CHECK");
  if (!set || std::string(set) != "1") return false;
  std::atexit([] {
    DeviceBlocks& blocks = device_blocks();
    std::lock_guard lock(blocks.mutex);
    if (blocks.sizes.empty()) return;
    std::size_t bytes = 0;
    for (const auto& [start, size] : blocks.sizes) bytes += size;
    std::fprintf(stderr, "emulated GPU: leak check: %zu blocks (%zu bytes) were never freed\n", blocks.sizes.size(),
                 bytes);
    std::fflush(stderr);
    std::_Exit(9);
  });
  return true;
}();

[[noreturn]] void report(const std::string& message) {
  std::fprintf(stderr, "emulated GPU: %s\n", message.c_str());
  std::abort();
}

std::string describe(const char* what, bool write, const StreamQueue* queue) {
  char stream[32];
  std::snprintf(stream, sizeof stream, "%p", static_cast<const void*>(queue));
  return std::string(what) + (write ? " (writing)" : " (reading)") + " on stream " + stream;
}

uint64_t record_uses(StreamQueue& queue, const std::vector<emu::Use>& uses, const char* what) {
  DeviceBlocks& blocks = device_blocks();
  std::lock_guard lock(blocks.mutex);
  const uint64_t work = blocks.next_work++;
  const uint64_t position = ++blocks.queued[&queue];
  const StreamClock& clock = blocks.clocks[&queue];
  for (const emu::Use& use : uses) {
    if (!use.pointer) continue;
    const char* block = blocks.block_of(use.pointer);
    if (!block) report(std::string(what) + " was given a host pointer, which a GPU cannot read");
    std::vector<PendingUse>& pending = blocks.pending[block];
    for (const PendingUse& other : pending) {
      const auto ordered = clock.find(other.queue);
      if (other.queue != &queue && (other.write || use.write) &&
          (ordered == clock.end() || ordered->second < other.position))
        report("race on a device block: " + describe(what, use.write, &queue) + " was queued while " +
               describe(other.what.c_str(), other.write, other.queue) +
               " had not run, and nothing orders the two streams");
    }
    pending.push_back({&queue, position, use.write, work, what});
  }
  return work;
}

// What work queued on `queue` from now on comes after: its own work so far, and what it waited for.
StreamClock position_of(const StreamQueue& queue) {
  DeviceBlocks& blocks = device_blocks();
  std::lock_guard lock(blocks.mutex);
  StreamClock clock = blocks.clocks[&queue];
  clock[&queue] = blocks.queued[&queue];
  return clock;
}

// `queue` waits for an event: its later work comes after everything the event's record did.
void order_after(const StreamQueue& queue, const StreamClock& event) {
  DeviceBlocks& blocks = device_blocks();
  std::lock_guard lock(blocks.mutex);
  StreamClock& clock = blocks.clocks[&queue];
  for (const auto& [stream, position] : event) clock[stream] = std::max(clock[stream], position);
}

void forget_stream(const StreamQueue* queue) {  // its address may be a new stream's later
  DeviceBlocks& blocks = device_blocks();
  std::lock_guard lock(blocks.mutex);
  blocks.queued.erase(queue);
  blocks.clocks.erase(queue);
  for (auto& [stream, clock] : blocks.clocks) clock.erase(queue);
}

void release_uses(uint64_t work) {
  DeviceBlocks& blocks = device_blocks();
  std::lock_guard lock(blocks.mutex);
  for (auto it = blocks.pending.begin(); it != blocks.pending.end();) {
    std::erase_if(it->second, [&](const PendingUse& use) { return use.work == work; });
    it = it->second.empty() ? blocks.pending.erase(it) : std::next(it);
  }
}

}  // namespace

namespace emu {
// Queues work on a stream, after the hazard check of the blocks it uses; emulated_device.h's
// launch calls it for kernels.
void enqueue(cudaStream_t stream, const std::vector<Use>& uses, const char* what, std::function<void()> work) {
  StreamQueue& queue = queue_for(stream);
  const uint64_t id = record_uses(queue, uses, what);
  queue.enqueue([id, work = std::move(work)] {
    work();
    release_uses(id);
  });
}
}  // namespace emu

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  *count = emulated_devices();
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* properties, int device) {
  if (!exists(device)) return fail(cudaErrorInvalidDevice);
  std::memset(properties, 0, sizeof(*properties));
  std::strcpy(properties->name, "minipipe CUDA emulator (CPU)");
  properties->totalGlobalMem = std::size_t{16} << 30;
  properties->major = 9;
  properties->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = current_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (!exists(device)) return fail(cudaErrorInvalidDevice);
  current_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
  const cudaError_t error = last_error;
  last_error = cudaSuccess;
  return error;
}
const char* cudaGetErrorName(cudaError_t error) {
  return error == cudaSuccess ? "cudaSuccess" : error == cudaErrorInvalidDevice ? "cudaErrorInvalidDevice"
                                                                               : "cudaErrorEmulated";
}
const char* cudaGetErrorString(cudaError_t error) {
  return error == cudaSuccess ? "no error" : error == cudaErrorInvalidDevice ? "invalid device ordinal"
                                                                            : "emulated error";
}

// Two cheap stand-ins for compute-sanitizer: new memory is filled with NaNs (0xFF bytes), so
// a kernel that reads what nothing wrote spreads NaNs into results the tests compare; and a
// guard zone after each block must be intact when it is freed, or a kernel wrote past the
// end. Layout: [header: payload size][payload, rounded up to 256][guard].
constexpr std::size_t kAlign = 256, kGuardBytes = 256;
constexpr unsigned char kGuardByte = 0xA5;

cudaError_t cudaMalloc(void** pointer, size_t bytes) {
  const std::size_t payload = (bytes + kAlign - 1) / kAlign * kAlign;
  auto* base = static_cast<unsigned char*>(std::aligned_alloc(kAlign, kAlign + payload + kGuardBytes));
  if (!base) return fail(cudaErrorMemoryAllocation);
  std::memcpy(base, &payload, sizeof(payload));
  std::memset(base + kAlign, 0xFF, payload);
  std::memset(base + kAlign + payload, kGuardByte, kGuardBytes);
  *pointer = base + kAlign;
  {
    std::lock_guard lock(device_blocks().mutex);
    device_blocks().sizes[static_cast<const char*>(*pointer)] = payload;
  }
  return cudaSuccess;
}
// Like the real one, cudaFree first waits for the work queued on every stream.
cudaError_t cudaFree(void* pointer) {
  if (!pointer) return cudaSuccess;
  synchronize_every_stream();
  {
    std::lock_guard lock(device_blocks().mutex);
    device_blocks().sizes.erase(static_cast<const char*>(pointer));
  }
  auto* base = static_cast<unsigned char*>(pointer) - kAlign;
  std::size_t payload = 0;
  std::memcpy(&payload, base, sizeof(payload));
  for (std::size_t i = 0; i < kGuardBytes; ++i)
    if (base[kAlign + payload + i] != kGuardByte) {
      std::fprintf(stderr, "emulated cudaFree: a kernel wrote %zu bytes past the end of a %zu-byte block\n", i,
                   payload);
      std::abort();
    }
  std::free(base);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (!bytes) return cudaSuccess;
  StreamQueue& queue = queue_for(stream);
  switch (kind) {
    case cudaMemcpyHostToDevice: {
      // From pageable memory the source is staged before the call returns; the copy is queued.
      auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                        static_cast<const char*>(src) + bytes);
      emu::enqueue(stream, {{dst, true}}, "memcpy H2D", [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
      return cudaSuccess;
    }
    case cudaMemcpyDeviceToHost:  // to pageable memory the call returns once the copy has run
      emu::enqueue(stream, {{src, false}}, "memcpy D2H", [=] { std::memcpy(dst, src, bytes); });
      queue.drain();
      return cudaSuccess;
    case cudaMemcpyDeviceToDevice:
      emu::enqueue(stream, {{src, false}, {dst, true}}, "memcpy D2D", [=] { std::memcpy(dst, src, bytes); });
      return cudaSuccess;
    default:
      return fail(cudaErrorInvalidValue);
  }
}
// Queued on `stream` only: like the real call, it does not wait for the source device's work.
cudaError_t cudaMemcpyPeerAsync(void* dst, int, const void* src, int, size_t bytes, cudaStream_t stream) {
  if (bytes) emu::enqueue(stream, {{src, false}, {dst, true}}, "peer copy", [=] { std::memcpy(dst, src, bytes); });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  *stream = reinterpret_cast<cudaStream_t>(new StreamQueue);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete &queue_for(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  queue_for(stream).drain();
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = reinterpret_cast<cudaEvent_t>(new EventHandle(std::make_shared<EventState>()));
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) { return cudaEventCreate(event); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete &event_of(event);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  const EventHandle state = event_of(event);
  StreamQueue& queue = queue_for(stream);
  uint64_t record = 0;
  {
    std::lock_guard lock(state->mutex);
    record = ++state->recorded;
    state->clock = position_of(queue);
  }
  queue.enqueue([state, record] {
    {
      std::lock_guard lock(state->mutex);
      state->completed = std::max(state->completed, record);
      state->time = Clock::now();
    }
    state->reached.notify_all();
  });
  return cudaSuccess;
}
// Waits for the event's latest record as of the call (none: nothing to wait for).
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  const EventHandle state = event_of(event);
  StreamQueue& queue = queue_for(stream);
  uint64_t record = 0;
  StreamClock clock;
  {
    std::lock_guard lock(state->mutex);
    record = state->recorded;
    clock = state->clock;
  }
  order_after(queue, clock);
  queue.enqueue([state, record] { state->wait_for(record); });
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  const EventHandle& state = event_of(event);
  uint64_t record = 0;
  {
    std::lock_guard lock(state->mutex);
    record = state->recorded;
  }
  state->wait_for(record);
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  EventState& state = *event_of(event);
  std::lock_guard lock(state.mutex);
  return state.completed >= state.recorded ? cudaSuccess : cudaErrorNotReady;  // not sticky, as on a GPU
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  EventState &from = *event_of(start), &to = *event_of(end);
  std::scoped_lock lock(from.mutex, to.mutex);
  if (from.completed < from.recorded || to.completed < to.recorded) return fail(cudaErrorNotReady);
  *ms = std::chrono::duration<float, std::milli>(to.time - from.time).count();
  return cudaSuccess;
}

// A handle remembers its stream; GEMMs are queued there.
struct cublasContext {
  cudaStream_t stream = nullptr;
};
cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
const char* cublasGetStatusName(cublasStatus_t status) {
  return status == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_EMULATED";
}
const char* cublasGetStatusString(cublasStatus_t status) {
  return status == CUBLAS_STATUS_INVALID_VALUE ? "an invalid value or parameter was passed (emulated cuBLAS)"
                                               : "emulated cuBLAS error";
}

// Column-major C = alpha op(A) op(B) + beta C, as cuBLAS defines it; C is not read when beta == 0.
// Queued on the handle's stream; alpha and beta are read now (host pointer mode).
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t trans_a, cublasOperation_t trans_b,
                                         int m, int n, int k, const float* alpha_pointer, const float* a, int lda,
                                         long long stride_a, const float* b, int ldb, long long stride_b,
                                         const float* beta_pointer, float* c, int ldc, long long stride_c, int batch) {
  // cuBLAS's own argument rules (cublas<t>gemm in the cuBLAS guide), which a GPU enforces
  // even where a leading dimension is never used, e.g. lda = 0 when k = 0.
  const int a_rows = trans_a == CUBLAS_OP_N ? m : k, b_rows = trans_b == CUBLAS_OP_N ? k : n;
  if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) ||
      ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  const float alpha = *alpha_pointer, beta = *beta_pointer;
  emu::enqueue(handle->stream, {{a, false}, {b, false}, {c, true}}, "sgemm", [=] {
    for (int p = 0; p < batch; ++p) {
      const float* ap = a + p * stride_a;
      const float* bp = b + p * stride_b;
      float* cp = c + p * stride_c;
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
          // In float, as cuBLAS computes (FP32, TF32 off), not double: the GPU-against-CPU
          // tests then see rounding differences of a GPU's size, in another order than Eigen's.
          float total = 0.0f;
          for (int l = 0; l < k; ++l) {
            const float av = trans_a == CUBLAS_OP_N ? ap[i + l * lda] : ap[l + i * lda];
            const float bv = trans_b == CUBLAS_OP_N ? bp[l + j * ldb] : bp[j + l * ldb];
            total = std::fma(av, bv, total);
          }
          float& out = cp[i + j * ldc];
          out = alpha * total + (beta == 0.0f ? 0.0f : beta * out);
        }
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t trans_a, cublasOperation_t trans_b, int m,
                              int n, int k, const float* alpha, const float* a, int lda, const float* b, int ldb,
                              const float* beta, float* c, int ldc) {
  return cublasSgemmStridedBatched(handle, trans_a, trans_b, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0,
                                   1);
}

}  // extern "C"
