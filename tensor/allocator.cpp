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
// Under AddressSanitizer nothing is cached, so that it sees every use after free.
class CpuAllocator final : public Allocator {
 public:
  ~CpuAllocator() override { release_cached(); }

  void* allocate(std::size_t bytes) override {
    const std::size_t size = size_class(bytes);
    void* pointer = nullptr;
    if (kCaching) {
      std::lock_guard lock(mutex_);
      auto it = cached_.find(size);
      if (it != cached_.end() && !it->second.empty()) {
        pointer = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= size;
      }
    }
    if (!pointer) pointer = reserve(size);
    if (!pointer) {
      release_cached();  // give the cache back and try once more
      pointer = reserve(size);
      if (!pointer) throw std::bad_alloc();
    }
    count_allocation(bytes);
    return pointer;
  }

  void deallocate(void* pointer, std::size_t bytes) override {
    count_deallocation(bytes);
    const std::size_t size = size_class(bytes);
    if (kCaching) {
      std::lock_guard lock(mutex_);
      if (cached_bytes_ + size <= kMaxCachedBytes) {
        cached_[size].push_back(pointer);
        cached_bytes_ += size;
        return;
      }
    }
    release(pointer, size);
  }

  void release_cached() {
    std::lock_guard lock(mutex_);
    for (auto& [size, blocks] : cached_)
      for (void* block : blocks) release(block, size);
    cached_.clear();
    cached_bytes_ = 0;
  }

 private:
#if defined(__SANITIZE_ADDRESS__)
  static constexpr bool kCaching = false;
#else
  static constexpr bool kCaching = true;
#endif
  static constexpr std::size_t kMaxCachedBytes = std::size_t{2} << 30;

  static std::size_t size_class(std::size_t bytes) { return detail::allocation_size_class(bytes); }
  void* reserve(std::size_t size) {
    void* pointer = std::aligned_alloc(64, size);
    if (pointer) count_reserved(static_cast<int64_t>(size));
    return pointer;
  }
  void release(void* pointer, std::size_t size) {
    std::free(pointer);
    count_reserved(-static_cast<int64_t>(size));
  }

  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> cached_;
  std::size_t cached_bytes_ = 0;
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
