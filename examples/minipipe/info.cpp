// `minipipe info`: what this build contains, and where it looks for data.
#include <Eigen/Core>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "commands.h"
#include "minipipe_config.h"

namespace minipipe::cli {

std::string data_directory() {
  if (const char* from_environment = std::getenv("MINIPIPE_DATA_DIR")) return from_environment;
  if (std::filesystem::exists(MINIPIPE_SOURCE_DATA_DIR)) return MINIPIPE_SOURCE_DATA_DIR;
  return MINIPIPE_INSTALLED_DATA_DIR;
}

int print_info() {
  std::printf("minipipe %s\n", MINIPIPE_VERSION);
  std::printf("  compiler       g++ %d.%d, C++%ld\n", __GNUC__, __GNUC_MINOR__, __cplusplus / 100 % 100);
  std::printf("  CPU kernels    Eigen %d.%d.%d, single-threaded per stage; %u hardware threads here\n",
              EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION, std::thread::hardware_concurrency());
  std::printf("  CUDA           %s; GPUs seen: none\n",
              MINIPIPE_NVCC_FOUND ? "nvcc found at build time, CUDA kernels not in this version"
                                  : "not built (no nvcc, or -Dcuda=disabled)");
  std::printf("  MPI            %s\n", MINIPIPE_HAS_MPI ? "found" : "not built");
  std::printf("  data directory %s\n", data_directory().c_str());
  return 0;
}

}  // namespace minipipe::cli
