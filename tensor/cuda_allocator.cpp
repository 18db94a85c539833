#include "tensor/cuda_allocator.h"

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/copy.h"
#include "kernels/cuda/runtime.h"

namespace minipipe {

namespace {

void release_caches_at_exit();  // below

// Plain cudaMalloc blocks (never managed memory), kept after a tensor dies and handed out
// again, so that a training step, which allocates the same shapes every time, makes no
// cudaMalloc (a device-wide synchronisation) on its hot path.
//
// Blocks are reused only on the stream that owns them: work queued on one stream runs in
// order, so a block freed there cannot be overwritten before its last reader ran. CUDA's
// per-thread default stream has one handle for every thread, so for it the thread is part
// of the key. Three rules cover tensors that cross streams (a pipeline stage's activations
// and gradients, read by a neighbour's thread; docs/cuda.md, "Streams"):
// - the receiving thread's stream first waits for the work that wrote it (the executor's
//   hand-offs send a kernels::WorkMark along);
// - the receiving thread's stream then takes the block over (hand_over_to_current_stream),
//   since that stream reads it from then on, and the sender's stream may not reuse it
//   before those reads ran;
// - a block freed from another stream than its owner goes back to its owner with an event
//   recorded on the freeing stream, whose queued work may still read it: the owner's stream
//   waits for that event before it reuses the block. No host thread waits.
class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int device) : device_(device) {}

  void* allocate(std::size_t bytes) override {
    const std::size_t size = detail::allocation_size_class(bytes);
    const StreamKey stream = current_stream_key();
    void* pointer = take_cached(stream, size);  // ordered after its last use on any stream
    if (!pointer) pointer = reserve(size);
    if (!pointer) {  // out of memory: give the cache back and try once more
      release_cached();
      pointer = reserve(size);
    }
    if (!pointer)
      throw std::runtime_error("out of memory on cuda:" + std::to_string(device_) + ": could not allocate " +
                               std::to_string(size >> 20) + " MiB with " + std::to_string(stats().current_bytes >> 20) +
                               " MiB in live tensors; use a smaller batch, more micro-batches or recomputation");
    {
      std::lock_guard lock(mutex_);
      live_[pointer] = {size, stream};
    }
    count_allocation(bytes);
    if (poison_) {
      // On this device's stream: the caller's current device may be another one.
      const kernels::cuda::DeviceGuard on(device_);
      kernels::cuda::fill32(pointer, 0xFFFFFFFFu, static_cast<int64_t>(size / 4), stream.stream);
    }
    return pointer;
  }

  void deallocate(void* pointer, std::size_t bytes) override {
    count_deallocation(bytes);
    const StreamKey freeing = current_stream_key();
    Block block;
    {
      std::lock_guard lock(mutex_);
      const auto it = live_.find(pointer);
      if (it == live_.end()) throw std::logic_error("CUDA allocator: freeing a block it did not allocate");
      block = it->second;
      live_.erase(it);
    }
    std::shared_ptr<kernels::cuda::Event> freed = freeing == block.stream ? nullptr : mark_queued_work(freeing.stream);
    std::lock_guard lock(mutex_);
    free_[{block.stream, block.size}].push_back({pointer, std::move(freed)});
  }

  void hand_over_to_current_stream(void* pointer) override {
    const StreamKey stream = current_stream_key();
    std::lock_guard lock(mutex_);
    const auto it = live_.find(pointer);
    if (it == live_.end()) throw std::logic_error("CUDA allocator: handing over a block it did not allocate");
    it->second.stream = stream;
  }

  void release_cached() {
    std::lock_guard lock(mutex_);
    for (auto& [key, blocks] : free_)
      for (const CachedBlock& block : blocks) {
        kernels::cuda::device_free(device_, block.pointer);
        count_reserved(-static_cast<int64_t>(key.second));
      }
    free_.clear();
  }

 private:
  struct StreamKey {
    cudaStream_t stream;
    std::thread::id thread;  // only for the per-thread default stream
    bool operator<(const StreamKey& o) const { return stream != o.stream ? stream < o.stream : thread < o.thread; }
    bool operator==(const StreamKey&) const = default;
  };
  struct Block {
    std::size_t size = 0;
    StreamKey stream;
  };
  struct CachedBlock {
    void* pointer;
    std::shared_ptr<kernels::cuda::Event> freed;  // set when another stream than the owner freed it
  };

  static StreamKey current_stream_key() {
    const cudaStream_t stream = kernels::cuda::current_stream();
    return {stream, stream == cudaStreamPerThread ? std::this_thread::get_id() : std::thread::id()};
  }

  void* reserve(std::size_t size) {
    void* pointer = kernels::cuda::device_malloc(device_, size);
    if (!pointer) return nullptr;
    count_reserved(static_cast<int64_t>(size));
    // Registered after the first cudaMalloc, when the CUDA runtime has started and set up its
    // own exit handlers: handlers run last-registered first, so this one runs before them.
    static std::once_flag registered;
    std::call_once(registered, [] { std::atexit(release_caches_at_exit); });
    return pointer;
  }

  // An event after the work queued so far on `stream` (this device's). Called while a tensor
  // dies, from a destructor, so nothing may be thrown: should making the event fail, the
  // host waits for the stream instead, and a failed wait leaves a sticky error that the next
  // checked call reports.
  std::shared_ptr<kernels::cuda::Event> mark_queued_work(cudaStream_t stream) const noexcept {
    try {
      const kernels::cuda::DeviceGuard on(device_);
      auto event = std::make_shared<kernels::cuda::Event>(false);
      event->record(stream);
      return event;
    } catch (...) {
      int previous = 0;
      cudaGetDevice(&previous);
      cudaSetDevice(device_);
      cudaStreamSynchronize(stream);
      cudaSetDevice(previous);
      return nullptr;
    }
  }

  void* take_cached(const StreamKey& stream, std::size_t size) {
    CachedBlock block{nullptr, nullptr};
    {
      std::lock_guard lock(mutex_);
      const auto it = free_.find({stream, size});
      if (it == free_.end() || it->second.empty()) return nullptr;
      block = std::move(it->second.back());
      it->second.pop_back();
    }
    if (block.freed) {  // the stream that freed it may still read it
      const kernels::cuda::DeviceGuard on(device_);
      block.freed->wait_on(stream.stream);
    }
    return block.pointer;
  }

  const int device_;
  // MINIPIPE_CUDA_POISON=1: every block handed out is first filled with NaNs, so that a kernel
  // reading memory nothing wrote shows up as NaNs in its results (a debugging aid; it costs
  // a fill per allocation).
  const bool poison_ = [] {
    const char* value = std::getenv("MINIPIPE_CUDA_POISON");
    return value && std::string(value) == "1";
  }();
  std::mutex mutex_;
  std::map<std::pair<StreamKey, std::size_t>, std::vector<CachedBlock>> free_;
  std::unordered_map<void*, Block> live_;
};

struct Allocators {
  std::mutex mutex;
  std::vector<std::unique_ptr<CudaCachingAllocator>> by_device;
};

Allocators& allocators() {
  static Allocators* all = new Allocators;  // never destroyed: tensors may die after main()
  return *all;
}

// Gives every cached block back at exit. The allocators themselves stay (tensors may die
// after main()), but their caches, once the program is done, are no longer memory in use:
// freed here, they leave a leak checker (compute-sanitizer --leak-check full, the emulated
// GPU's) only the blocks that tensors still hold, and the emulator checks each freed block's
// guard bytes. Errors are ignored: the CUDA runtime may already be going down.
void release_caches_at_exit() {
  Allocators& all = allocators();
  std::lock_guard lock(all.mutex);
  for (const auto& allocator : all.by_device) {
    if (!allocator) continue;
    try {
      allocator->release_cached();
    } catch (const std::exception&) {
    }
  }
}

}  // namespace

Allocator& cuda_caching_allocator(int index) {
  Allocators& all = allocators();
  std::lock_guard lock(all.mutex);
  if (index < 0 || static_cast<std::size_t>(index) >= all.by_device.size() || !all.by_device[index]) {
    kernels::cuda::check_device(index);
    if (static_cast<std::size_t>(index) >= all.by_device.size()) all.by_device.resize(index + 1);
    all.by_device[index] = std::make_unique<CudaCachingAllocator>(index);
  }
  return *all.by_device[index];
}

void release_cuda_cache(int index) {
  Allocators& all = allocators();
  std::lock_guard lock(all.mutex);
  if (index >= 0 && static_cast<std::size_t>(index) < all.by_device.size() && all.by_device[index])
    all.by_device[index]->release_cached();
}

}  // namespace minipipe
