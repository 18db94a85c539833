#!/usr/bin/env bash
# Sets up, builds and runs the test suite; ends with a line "N passed, N failed, N skipped".
#   scripts/test.sh [BUILD_DIR] [meson setup options...] [-- meson test options...]
# With no test options every suite runs (README's "Tests" lists them); after `--`, for
# example `-- --suite unit --suite sanitize`, only the targets those tests need are built.
# Each phase's seconds go to BUILD_DIR/meson-logs/phase-seconds.txt, which
# `scripts/summarize_tests.py --times` prints with the slowest tests.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true
setup_options=() test_options=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do setup_options+=("$1"); shift; done
[ $# -gt 0 ] && shift
test_options=("$@")
bash scripts/install-deps.sh --tests
phase_start=$SECONDS
phases=""
phase_done() { phases+="$1 $((SECONDS - phase_start))"$'\n'; phase_start=$SECONDS; }
if [ ! -f "$build_dir/build.ninja" ]; then
  meson setup "$build_dir" "${setup_options[@]}"
fi
phase_done setup
if [ ${#test_options[@]} -eq 0 ]; then
  meson compile -C "$build_dir" -j "$(nproc)"
else  # what the chosen tests need, as `meson test` would rebuild it, but timed apart
  targets=$(meson test -C "$build_dir" "${test_options[@]}" --list 2>/dev/null | python3 scripts/test_targets.py "$build_dir")
  # shellcheck disable=SC2086
  ninja -C "$build_dir" -j "$(nproc)" $targets
fi
phase_done compile
status=0
meson test -C "$build_dir" --no-rebuild --print-errorlogs "${test_options[@]}" || status=$?
phase_done test
printf '%s' "$phases" > "$build_dir/meson-logs/phase-seconds.txt"
python3 scripts/summarize_tests.py "$build_dir" || status=1
exit $status
