#!/usr/bin/env bash
# A longer fuzzing campaign over the readers of untrusted input and the command-line parser
# (tests/fuzz/fuzz_readers.cpp):
# each reader for RUNS executions (restarted with a new seed after a crash), then a table of
# executions, crashes and distinct crashing inputs (saved under BUILD_DIR/fuzz-crashes/READER/).
# Build with -Db_sanitize=address,undefined to catch memory errors too.
#   bash scripts/fuzz.sh [BUILD_DIR] [RUNS]        (default: build, 1000000)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
runs=${2:-1000000}
fuzzer="$build/tests/fuzz_readers"
[ -x "$fuzzer" ] || { echo "no $fuzzer: build first (meson compile -C $build)"; exit 2; }
crashes_dir="$build/fuzz-crashes"
mkdir -p "$crashes_dir"
printf '%-12s %12s %9s %9s %10s\n' reader executions seconds crashes distinct
status=0
for target in safetensors idx cifar csv text cli trace; do
  done_runs=0 crashes=0 seed=1 start=$(date +%s.%N)
  mkdir -p "$crashes_dir/$target"
  while [ "$done_runs" -lt "$runs" ]; do
    line=$("$fuzzer" "$target" "tests/fuzz/corpus/$target" --runs $((runs - done_runs)) --seed $seed \
           --crash-dir "$crashes_dir/$target" 2>/dev/null | tail -n 1)
    if [[ "$line" =~ ([0-9]+)\ executions ]]; then
      done_runs=$((done_runs + BASH_REMATCH[1]))
    else  # it died: count it and go on with another seed (the input is in $crashes_dir)
      crashes=$((crashes + 1)); status=1
      [ "$crashes" -ge 20 ] && break
    fi
    seed=$((seed + 1))
  done
  distinct=$(ls "$crashes_dir/$target" | wc -l)
  printf '%-12s %12d %9.1f %9d %10d\n' "$target" "$done_runs" "$(python3 -c 'import sys, time; print(time.time() - float(sys.argv[1]))' "$start")" "$crashes" "$distinct"
done
exit $status
