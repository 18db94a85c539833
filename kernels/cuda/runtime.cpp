#include "kernels/cuda/runtime.h"

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"

namespace minipipe::kernels::cuda {

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  // The runtime also keeps the error as the thread's last one; it is reported now, so clear
  // it, or the next launch check (cudaGetLastError) would report it again as its own.
  cudaGetLastError();
  throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) +
                           ") from " + call + " at " + file + ":" + std::to_string(line));
}

int device_count(std::string* why_not) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear it: having no GPU is an answer here, not an error
    if (why_not) *why_not = cudaGetErrorString(status);
    return 0;
  }
  if (count == 0 && why_not) *why_not = "the CUDA runtime reports no devices";
  return count;
}

std::string describe_device(int index) {
  cudaDeviceProp properties{};
  MINIPIPE_CUDA_CHECK(cudaGetDeviceProperties(&properties, index));
  return std::string(properties.name) + ", " + std::to_string(properties.totalGlobalMem >> 30) + " GiB, sm_" +
         std::to_string(properties.major) + std::to_string(properties.minor);
}

void check_device(int index) {
  std::string why_not;
  const int count = device_count(&why_not);
  if (index >= 0 && index < count) return;
  if (count == 0) throw std::runtime_error("device cuda:" + std::to_string(index) + " is not available: " + why_not + "; use device 'cpu'");
  throw std::runtime_error("device cuda:" + std::to_string(index) + " does not exist: this machine has " +
                           std::to_string(count) + " GPU(s), cuda:0 to cuda:" + std::to_string(count - 1));
}

DeviceGuard::DeviceGuard(int index) {
  MINIPIPE_CUDA_CHECK(cudaGetDevice(&previous_));
  if (index != previous_) MINIPIPE_CUDA_CHECK(cudaSetDevice(index));
}
DeviceGuard::~DeviceGuard() { cudaSetDevice(previous_); }

namespace {
thread_local cudaStream_t thread_stream = cudaStreamPerThread;
}

cudaStream_t current_stream() { return thread_stream; }

Stream::Stream(int device) : device_(device) {
  DeviceGuard on(device);
  MINIPIPE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}
Stream::~Stream() {
  if (stream_) cudaStreamDestroy(stream_);
}
void Stream::synchronize() const { MINIPIPE_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

StreamGuard::StreamGuard(cudaStream_t stream) : previous_(thread_stream) { thread_stream = stream; }
StreamGuard::~StreamGuard() { thread_stream = previous_; }

Event::Event(bool timing) {
  MINIPIPE_CUDA_CHECK(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
}
Event::~Event() {
  if (event_) cudaEventDestroy(event_);
}
void Event::record(cudaStream_t stream) { MINIPIPE_CUDA_CHECK(cudaEventRecord(event_, stream)); }
void Event::wait_on(cudaStream_t stream) const { MINIPIPE_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0)); }
void Event::synchronize() const { MINIPIPE_CUDA_CHECK(cudaEventSynchronize(event_)); }
bool Event::done() const {
  const cudaError_t status = cudaEventQuery(event_);
  if (status == cudaErrorNotReady) return false;
  MINIPIPE_CUDA_CHECK(status);
  return true;
}
float Event::elapsed_ms(const Event& start, const Event& end) {
  float ms = 0.0f;
  MINIPIPE_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, end.event_));
  return ms;
}

void copy_host_to_device(void* device_dst, const void* host_src, std::size_t bytes) {
  // From pageable memory the call returns once the source has been staged, so the caller
  // may free it straight away.
  MINIPIPE_CUDA_CHECK(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, thread_stream));
}

void copy_device_to_host(void* host_dst, const void* device_src, std::size_t bytes) {
  MINIPIPE_CUDA_CHECK(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, thread_stream));
  MINIPIPE_CUDA_CHECK(cudaStreamSynchronize(thread_stream));
}

void copy_device_to_device(void* dst, int dst_device, const void* src, int src_device, std::size_t bytes) {
  if (dst_device == src_device)
    MINIPIPE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, thread_stream));
  else {
    // The copy is queued on the destination device's stream, which knows nothing of the work
    // this thread queued on the source device: the source may still be being written there,
    // and once the copy is queued the source's memory may be freed and reused there. (A
    // destroyed event still orders the waits queued on it.)
    Event source_written(false), copied(false);
    {
      DeviceGuard on(src_device);
      source_written.record(thread_stream);
    }
    source_written.wait_on(thread_stream);
    MINIPIPE_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes, thread_stream));
    copied.record(thread_stream);
    DeviceGuard on(src_device);
    copied.wait_on(thread_stream);
  }
}

void* device_malloc(int device, std::size_t bytes) {
  DeviceGuard on(device);
  void* pointer = nullptr;
  const cudaError_t status = cudaMalloc(&pointer, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  MINIPIPE_CUDA_CHECK(status);
  return pointer;
}

void device_free(int device, void* pointer) {
  DeviceGuard on(device);
  MINIPIPE_CUDA_CHECK(cudaFree(pointer));
}

}  // namespace minipipe::kernels::cuda
