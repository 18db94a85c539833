// `minipipe info`: what this build contains, and where it looks for data.
#include <Eigen/Core>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "commands.h"
#include "kernels/cpu/threads.h"
#include "minipipe_config.h"
#if MINIPIPE_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace minipipe::cli {

std::string data_directory() {
  if (const char* from_environment = std::getenv("MINIPIPE_DATA_DIR")) return from_environment;
  if (std::filesystem::exists(MINIPIPE_SOURCE_DATA_DIR)) return MINIPIPE_SOURCE_DATA_DIR;
  return MINIPIPE_INSTALLED_DATA_DIR;
}

int print_info() {
  std::printf("minipipe %s\n", MINIPIPE_VERSION);
  std::printf("  compiler       g++ %d.%d, C++%ld\n", __GNUC__, __GNUC_MINOR__, __cplusplus / 100 % 100);
#if defined(__AVX512F__)
  const char* gemm = "minipipe's AVX-512 kernel";
#else
  const char* gemm = "Eigen's";
#endif
  std::printf("  CPU kernels    Eigen %d.%d.%d, GEMM by %s; one thread per stage, %s; %u hardware threads here\n",
              EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, gemm,
              kernels::cpu::kernel_threads_supported() ? "more with --threads" : "no OpenMP for --threads",
              std::thread::hardware_concurrency());
#if MINIPIPE_HAS_CUDA
  int runtime_version = 0;
  cudaRuntimeGetVersion(&runtime_version);
  std::string why_not;
  const int gpus = kernels::cuda::device_count(&why_not);
  std::printf("  CUDA           built for sm_%s + PTX, runtime %d.%d; GPUs seen: %d%s\n", MINIPIPE_GPU_ARCH,
              runtime_version / 1000, runtime_version % 1000 / 10, gpus, gpus == 0 ? (" (" + why_not + ")").c_str() : "");
  for (int i = 0; i < gpus; ++i) std::printf("                 cuda:%d  %s\n", i, kernels::cuda::describe_device(i).c_str());
#else
  std::printf("  CUDA           not built (no nvcc or CUDA toolkit, or -Dcuda=disabled)\n");
#endif
  std::printf("  MPI            %s\n", MINIPIPE_HAS_MPI ? "found" : "not built");
  std::printf("  NCCL           %s\n", MINIPIPE_HAS_NCCL ? "found (GPU tensors between processes)" : "not built");
  std::printf("  data directory %s\n", data_directory().c_str());
  return 0;
}

}  // namespace minipipe::cli
