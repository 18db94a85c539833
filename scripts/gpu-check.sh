#!/usr/bin/env bash
# What the CUDA backend must show on a machine with a GPU (issue 3, items 3 and 4), in one
# script for a bare GPU machine with nvcc, Meson and Ninja but none of the Debian packages:
# first scripts/device-carry.sh here, then there, with .device-carry carried along,
#   bash scripts/gpu-check.sh [STEP...]      STEP: build, test, memcheck, bench (default all)
# Results go to $OUT (or gpu-check-results/): the test log, compute-sanitizer's reports and
# the benchmarks' JSON. Each step is short enough for one 10-minute device call.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
carry=$root/.device-carry
out=${OUT:-$root/gpu-check-results}
build=build-gpu
mkdir -p "$out"
[ -d "$carry/pkgconfig" ] || { echo "no $carry: run scripts/device-carry.sh first and carry .device-carry" >&2; exit 2; }
export PKG_CONFIG_PATH=$carry/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
command -v pkg-config > /dev/null || export PKG_CONFIG=$root/scripts/mini_pkg_config.py
if [ ! -e "$carry/lib/libz.so" ]; then  # the machine's own zlib, under the name the linker looks for
  libz=$("$(command -v ldconfig || echo /sbin/ldconfig)" -p | sed -nE 's/.*libz\.so\.1 \(libc6,x86-64\) => (.*)/\1/p' | head -n 1)
  [ -n "$libz" ] || { echo "no libz.so.1 on this machine" >&2; exit 2; }
  ln -sf "$libz" "$carry/lib/libz.so"
fi
export PATH=/usr/local/cuda/bin:$PATH
jobs=$(nproc)

build_gtest() {  # GoogleTest from its sources, by this machine's compiler (once per machine)
  local src=$carry/src/googletest objects stamp
  stamp="$(uname -n) $(g++ --version | head -n 1)"
  [ -f "$carry/lib/libgtest_main.a" ] && [ "$(cat "$carry/lib/built-by" 2>/dev/null)" = "$stamp" ] && return 0
  objects=$(mktemp -d)
  g++ -std=c++17 -O2 -pthread -I"$src/include" -I"$src" -c "$src/src/gtest-all.cc" -o "$objects/gtest-all.o" &&
    g++ -std=c++17 -O2 -pthread -I"$src/include" -c "$src/src/gtest_main.cc" -o "$objects/gtest_main.o" &&
    rm -f "$carry/lib/libgtest.a" "$carry/lib/libgtest_main.a" &&
    ar rcs "$carry/lib/libgtest.a" "$objects/gtest-all.o" && ar rcs "$carry/lib/libgtest_main.a" "$objects/gtest_main.o" &&
    echo "$stamp" > "$carry/lib/built-by"
}

step_build() {
  nvidia-smi | tee "$out/nvidia-smi.txt"
  nvcc --version | tail -2
  build_gtest || return 1
  if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dcuda=enabled --buildtype=release > "$out/setup.log" 2>&1 || { tail -40 "$out/setup.log"; return 1; }
  fi
  meson compile -C "$build" -j "$jobs" > "$out/compile.log" 2>&1 || { grep -E "error|Error" -A3 "$out/compile.log" | head -60; return 1; }
  echo "built $build"
}

step_test() {
  local status=0
  meson test -C "$build" --num-processes 4 --print-errorlogs > "$out/test.log" 2>&1 || status=$?
  grep -E "^ *[0-9]+/[0-9]+ " "$out/test.log" | tail -40
  cp "$build/meson-logs/testlog.txt" "$out/testlog.txt" 2>/dev/null
  grep -h "largest relative loss difference" "$out/testlog.txt"  # item 5's margin under its 1e-4
  python3 scripts/summarize_tests.py "$build" | tee "$out/test-summary.txt"
  return $status
}

# compute-sanitizer over every CUDA suite: item 3 asks for no report at all. Leaks count too:
# the caching allocator frees its cache at exit, so a leak is a block a tensor still holds.
step_memcheck() {
  local status=0 suite
  command -v compute-sanitizer > /dev/null || export PATH=$PATH:/usr/local/cuda/compute-sanitizer
  command -v compute-sanitizer > /dev/null || { echo "no compute-sanitizer in PATH or /usr/local/cuda" >&2; return 1; }
  for suite in cuda_test cuda_ops_test cuda_training_test; do
    timeout 280 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
      "$build/tests/$suite" > "$out/memcheck-$suite.log" 2>&1
    local rc=$?
    echo "$suite: exit $rc, $(grep -c '========= ' "$out/memcheck-$suite.log") sanitizer lines; $(tail -1 "$out/memcheck-$suite.log")"
    [ $rc -eq 0 ] || status=1
  done
  return $status
}

step_bench() {  # item 4: GB/s and TFLOP/s per op against the device's peak; then training
  local minipipe=$build/examples/minipipe/minipipe
  "$build/benchmarks/cuda_ops_benchmark" --json "$out/cuda_ops.json" | tee "$out/cuda_ops.txt" || return 1
  "$minipipe" train gpt --device cuda:0 --steps 100 --log-json "$out/train-gpt-gpu.jsonl" | tail -4 &&
    "$minipipe" train gpt --device cuda:0 --steps 100 --stages 4 --micro-batches 8 --schedule 1f1b \
      --log-json "$out/train-gpt-gpu-4-stages.jsonl" --trace "$out/gpt-4-stages.trace.json" | tail -4
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(build test memcheck bench)
status=0
for step in "${steps[@]}"; do
  case $step in
    build | test | memcheck | bench) echo "== $step"; "step_$step" || status=1 ;;
    *) echo "unknown step '$step': use build, test, memcheck or bench" >&2; exit 2 ;;
  esac
done
exit $status
