#!/bin/bash
# Builds minipipe's CUDA backend against an emulated GPU and runs the CUDA test suites on the
# CPU, for machines without a GPU. The .cu files are compiled as C++ by ./nvcc (kernels run
# as fibers, see emulated_device.h) and linked against fake_runtime.cpp in place of the CUDA
# runtime and cuBLAS. This executes every kernel's indexing and arithmetic and the op layer's
# CUDA paths, with streams that run asynchronously and a check for races between them
# (docs/cuda.md); it says nothing of GPU timing, races within a kernel or the memory model,
# for which the real GPU run (scripts/gpu-check.sh, with compute-sanitizer) is still needed.
#
#   tests/cuda_emulation/run.sh [BUILD_DIR]     (default: build-cuda-emulated)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build-cuda-emulated}
mkdir -p "$build"
build=$(cd "$build" && pwd)  # absolute: Meson wants an absolute CUDA_PATH
toolkit=$build/emulated-toolkit

mkdir -p "$toolkit/lib64"
ln -sfn /usr/local/cuda/include "$toolkit/include"
echo "CUDA Version 13.0" > "$toolkit/version.txt"
g++ -std=c++20 -O2 -fPIC -shared -I/usr/local/cuda/include "$here/fake_runtime.cpp" -o "$toolkit/lib64/libcudart.so"
ln -sf libcudart.so "$toolkit/lib64/libcublas.so"
# NCCL between processes of this machine (named pipes), on the emulated streams.
g++ -std=c++20 -O2 -fPIC -shared -I/usr/local/cuda/include "$here/fake_nccl.cpp" -o "$toolkit/lib64/libnccl.so" \
  -L"$toolkit/lib64" -lcudart
printf "[binaries]\nnvcc = '%s'\n" "$here/nvcc" > "$build/emulated-native.ini"
# The emulator's own hazard check, on hand-made races and orderings.
g++ -std=c++20 -O1 -I/usr/local/cuda/include "$here/emulator_test.cpp" -o "$build/emulator_test" \
  -L"$toolkit/lib64" -lcudart -lgtest -lgtest_main -pthread
LD_LIBRARY_PATH=$toolkit/lib64 "$build/emulator_test"

# Meson finds the toolkit through CUDA_PATH (and CUDA_HOME, CUDA_ROOT, which must agree), at
# setup and whenever it reconfigures.
export CUDA_PATH=$toolkit CUDA_HOME=$toolkit CUDA_ROOT=$toolkit
nccl=disabled  # NCCL needs MPI too
command -v mpirun > /dev/null && nccl=enabled
# Every allocation starts as NaNs: reading memory that no kernel wrote then fails the tests.
# A block still held at exit fails the suite that leaked it (the caches are given back then).
# Four emulated GPUs per process: nccl's run of 2 stages x 2 replicas needs one per rank.
export MINIPIPE_EMULATED_GPUS=4 MINIPIPE_CUDA_POISON=1 MINIPIPE_EMULATED_LEAK_CHECK=1 LD_LIBRARY_PATH=$toolkit/lib64
# Only the `gpu` suite (the CUDA suites, the GPU scripts and the NCCL run) and what it needs
# are built: every other suite runs the same CPU code as the plain build.
bash "$root/scripts/test.sh" "$build" -Dcuda=enabled -Dnccl=$nccl --native-file "$build/emulated-native.ini" -- --suite gpu
