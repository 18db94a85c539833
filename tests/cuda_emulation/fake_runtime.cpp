// The CUDA runtime and cuBLAS calls minipipe makes, implemented on the CPU for the CUDA
// emulation build (see run.sh): "device" memory is host memory, copies are memcpy, every
// stream is in order because kernels finish before their launch returns (emulated_device.h),
// and SGEMM is a plain column-major loop, which checks the row/column swap in
// kernels/cuda/gemm.cpp. Two emulated devices, cuda:0 and cuda:1 (MINIPIPE_EMULATED_GPUS
// sets another count), so that peer copies and pipelines across GPUs run too.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

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
}  // namespace

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
  return cudaSuccess;
}
cudaError_t cudaFree(void* pointer) {
  if (!pointer) return cudaSuccess;
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
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  if (bytes) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyPeerAsync(void* dst, int, const void* src, int, size_t bytes, cudaStream_t) {
  if (bytes) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  *stream = reinterpret_cast<cudaStream_t>(new char);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete reinterpret_cast<char*>(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return cudaSuccess; }

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = reinterpret_cast<cudaEvent_t>(new Clock::time_point(Clock::now()));
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<Clock::time_point*>(event);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  *reinterpret_cast<Clock::time_point*>(event) = Clock::now();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  *ms = std::chrono::duration<float, std::milli>(*reinterpret_cast<Clock::time_point*>(end) -
                                                 *reinterpret_cast<Clock::time_point*>(start)).count();
  return cudaSuccess;
}

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  *handle = reinterpret_cast<cublasHandle_t>(new char);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  delete reinterpret_cast<char*>(handle);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
const char* cublasGetStatusName(cublasStatus_t) { return "CUBLAS_STATUS_EMULATED"; }
const char* cublasGetStatusString(cublasStatus_t) { return "emulated cuBLAS error"; }

// Column-major C = alpha op(A) op(B) + beta C, as cuBLAS defines it; C is not read when beta == 0.
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t, cublasOperation_t trans_a, cublasOperation_t trans_b,
                                         int m, int n, int k, const float* alpha, const float* a, int lda,
                                         long long stride_a, const float* b, int ldb, long long stride_b,
                                         const float* beta, float* c, int ldc, long long stride_c, int batch) {
  for (int p = 0; p < batch; ++p) {
    const float* ap = a + p * stride_a;
    const float* bp = b + p * stride_b;
    float* cp = c + p * stride_c;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double total = 0.0;
        for (int l = 0; l < k; ++l) {
          const float av = trans_a == CUBLAS_OP_N ? ap[i + l * lda] : ap[l + i * lda];
          const float bv = trans_b == CUBLAS_OP_N ? bp[l + j * ldb] : bp[j + l * ldb];
          total += static_cast<double>(av) * bv;
        }
        float& out = cp[i + j * ldc];
        out = static_cast<float>(*alpha * total + (*beta == 0.0f ? 0.0 : static_cast<double>(*beta) * out));
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t trans_a, cublasOperation_t trans_b, int m,
                              int n, int k, const float* alpha, const float* a, int lda, const float* b, int ldb,
                              const float* beta, float* c, int ldc) {
  return cublasSgemmStridedBatched(handle, trans_a, trans_b, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0,
                                   1);
}

}  // extern "C"
