#include "tensor/allocator.h"

#include "minipipe_config.h"
#if MINIPIPE_HAS_CUDA
#include "tensor/cuda_allocator.h"
#endif

#include <cstdlib>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace minipipe {

MemoryStats Allocator::stats() const {
  return {current_.load(), peak_.load(), count_.load(), reserved_.load()};
}

void Allocator::reset_peak() { peak_.store(current_.load()); }

void Allocator::count_allocation(std::size_t bytes) {
  const int64_t now = current_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  count_.fetch_add(1);
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
}

void Allocator::count_deallocation(std::size_t bytes) {
  current_.fetch_sub(static_cast<int64_t>(bytes));
}

void Allocator::count_reserved(int64_t bytes) { reserved_.fetch_add(bytes); }

std::size_t detail::allocation_size_class(std::size_t bytes) {
  if (bytes <= 4096) return bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
  std::size_t power = 4096;
  while (power * 2 < bytes) power *= 2;
  const std::size_t step = power / 4;
  return (bytes + step - 1) / step * step;
}

namespace {

// Host memory, 64-byte aligned (a cache line; enough for any SIMD load Eigen issues).
// Freed blocks are kept per size class and handed out again: a training step allocates the
// same shapes every time, and fresh large blocks would each cost an mmap and a page fault
// per 4 KiB on first touch. The counters still report the bytes of live tensors only.
//
// Each thread has a cache of its own, and a block goes back to the cache of the thread that
// allocated it (named in a 64-byte header before the block), whichever thread frees it. So a
// stage thread reuses the blocks its own core has just written instead of ones another core
// holds, takes no lock another thread takes on the way (one shared cache made two stage
// threads of one process train at 0.83x the speed of two processes, pipedream_benchmark), and
// an activation that stage 0 allocates and stage 1 frees returns to stage 0, which needs it
// again, rather than piling up with stage 1. A cache outlives its thread: the next new thread
// adopts it, blocks and all. Under AddressSanitizer nothing is cached, so that it sees every
// use after free.
class CpuAllocator final : public Allocator {
 public:
  ~CpuAllocator() override {
    release_cached();
    for (ThreadCache* cache : caches_) delete cache;
  }

  void* allocate(std::size_t bytes) override {
    const std::size_t size = size_class(bytes);
    ThreadCache* cache = thread_cache();
    void* block = kCaching ? cache->take(size) : nullptr;
    if (!block) block = reserve(size);
    if (!block) {
      release_cached();  // give every cache back and try once more
      block = reserve(size);
      if (!block) throw std::bad_alloc();
    }
    header_of(block)->owner = cache;
    count_allocation(bytes);
    return block;
  }

  void deallocate(void* block, std::size_t bytes) override {
    count_deallocation(bytes);
    const std::size_t size = size_class(bytes);
    if (kCaching && header_of(block)->owner->keep(block, size)) return;
    release(block, size);
  }

  void release_cached() {
    std::lock_guard lock(caches_mutex_);
    for (ThreadCache* cache : caches_) release_all(*cache);
  }

 private:
#if defined(__SANITIZE_ADDRESS__)
  static constexpr bool kCaching = false;
#else
  static constexpr bool kCaching = true;
#endif
  static constexpr std::size_t kMaxCachedBytes = std::size_t{2} << 30;  // per cache
  static constexpr std::size_t kHeaderBytes = 64;                      // keeps blocks 64-byte aligned

  // The free blocks of one thread (or of one that has ended, until another adopts them). Its
  // mutex is contended only by a thread freeing a block another allocated, and by
  // release_cached.
  struct ThreadCache {
    std::mutex mutex;
    std::unordered_map<std::size_t, std::vector<void*>> blocks;
    std::size_t bytes = 0;

    void* take(std::size_t size) {
      std::lock_guard lock(mutex);
      auto it = blocks.find(size);
      if (it == blocks.end() || it->second.empty()) return nullptr;
      void* block = it->second.back();
      it->second.pop_back();
      bytes -= size;
      return block;
    }
    bool keep(void* block, std::size_t size) {
      std::lock_guard lock(mutex);
      if (bytes + size > kMaxCachedBytes) return false;
      blocks[size].push_back(block);
      bytes += size;
      return true;
    }
  };
  struct Header {
    ThreadCache* owner;
  };
  static Header* header_of(void* block) {
    return reinterpret_cast<Header*>(static_cast<char*>(block) - kHeaderBytes);
  }

  // Holds the calling thread's cache; when the thread ends, the cache waits for another.
  class ThreadCacheHandle {
   public:
    explicit ThreadCacheHandle(CpuAllocator& allocator) : allocator_(allocator), cache_(allocator.adopt_cache()) {}
    ~ThreadCacheHandle() { allocator_.orphan_cache(cache_); }
    ThreadCache* get() const { return cache_; }

   private:
    CpuAllocator& allocator_;
    ThreadCache* cache_;
  };
  ThreadCache* thread_cache() {
    thread_local ThreadCacheHandle handle(*this);
    return handle.get();
  }
  ThreadCache* adopt_cache() {
    std::lock_guard lock(caches_mutex_);
    if (!orphans_.empty()) {
      ThreadCache* cache = orphans_.back();
      orphans_.pop_back();
      return cache;
    }
    caches_.push_back(new ThreadCache);
    return caches_.back();
  }
  void orphan_cache(ThreadCache* cache) {
    std::lock_guard lock(caches_mutex_);
    orphans_.push_back(cache);
  }
  void release_all(ThreadCache& cache) {
    std::lock_guard lock(cache.mutex);
    for (auto& [size, blocks] : cache.blocks)
      for (void* block : blocks) release(block, size);
    cache.blocks.clear();
    cache.bytes = 0;
  }

  static std::size_t size_class(std::size_t bytes) { return detail::allocation_size_class(bytes); }
  // A block of `size` bytes after its header; reserved_bytes counts both.
  void* reserve(std::size_t size) {
    char* base = static_cast<char*>(std::aligned_alloc(64, kHeaderBytes + size));
    if (!base) return nullptr;
    count_reserved(static_cast<int64_t>(kHeaderBytes + size));
    return base + kHeaderBytes;
  }
  void release(void* block, std::size_t size) {
    std::free(static_cast<char*>(block) - kHeaderBytes);
    count_reserved(-static_cast<int64_t>(kHeaderBytes + size));
  }

  std::mutex caches_mutex_;
  std::vector<ThreadCache*> caches_;   // every cache ever made (as many as threads ever at once)
  std::vector<ThreadCache*> orphans_;  // those whose thread has ended
};

CpuAllocator& cpu_allocator() {
  static CpuAllocator cpu;
  return cpu;
}

struct Registry {
  std::mutex mutex;
  std::vector<Allocator*> cuda;  // index = GPU ordinal
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  const bool registered = device.index >= 0 && static_cast<size_t>(device.index) < r.cuda.size() && r.cuda[device.index];
  if (registered) return *r.cuda[device.index];
#if MINIPIPE_HAS_CUDA
  return cuda_caching_allocator(device.index);  // throws, naming the GPUs there are, for a bad index
#else
  throw std::runtime_error("device " + device.str() +
                             " is not available: this build of minipipe has no CUDA backend "
                             "for it (rebuild with -Dcuda=enabled on a machine with a GPU), "
                             "or use device 'cpu'");
#endif
}

void register_allocator(Device device, Allocator* allocator) {
  if (device.is_cpu()) throw std::invalid_argument("the CPU allocator is built in");
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (static_cast<size_t>(device.index) >= r.cuda.size()) r.cuda.resize(device.index + 1);
  r.cuda[device.index] = allocator;
}

namespace {
thread_local std::shared_ptr<MemoryTracker> thread_tracker;
}

void MemoryTracker::add(int64_t bytes) {
  const int64_t now = current_bytes.fetch_add(bytes) + bytes;
  int64_t peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
  }
}

const std::shared_ptr<MemoryTracker>& current_memory_tracker() { return thread_tracker; }
MemoryTrackerScope::MemoryTrackerScope(std::shared_ptr<MemoryTracker> tracker) : previous_(std::move(thread_tracker)) {
  thread_tracker = std::move(tracker);
}
MemoryTrackerScope::~MemoryTrackerScope() { thread_tracker = std::move(previous_); }

MemoryStats memory_stats(Device device) { return allocator_for(device).stats(); }
void reset_peak_memory(Device device) { allocator_for(device).reset_peak(); }

void empty_cache(Device device) {
  if (device.is_cpu()) cpu_allocator().release_cached();
#if MINIPIPE_HAS_CUDA
  if (device.is_cuda()) release_cuda_cache(device.index);
#endif
}

}  // namespace minipipe
