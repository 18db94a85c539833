#pragma once
// A failed CUDA call becomes an exception naming the call, the file and the line, so that
// an error surfaces where it happened instead of at the next unrelated call.
#include <cuda_runtime_api.h>

namespace minipipe::kernels::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);

}  // namespace minipipe::kernels::cuda

#define MINIPIPE_CUDA_CHECK(call)                                                          \
  do {                                                                                     \
    const cudaError_t minipipe_status_ = (call);                                           \
    if (minipipe_status_ != cudaSuccess)                                                   \
      ::minipipe::kernels::cuda::throw_cuda_error(minipipe_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports a bad launch configuration at the launch site.
#define MINIPIPE_CUDA_CHECK_LAUNCH() MINIPIPE_CUDA_CHECK(cudaGetLastError())
