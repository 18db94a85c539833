#!/usr/bin/env bash
# Sets up, builds and runs the test suite; ends with a line "N passed, N failed, N skipped".
#   scripts/test.sh [BUILD_DIR] [extra meson setup options...]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true
bash scripts/install-deps.sh --tests
if [ ! -f "$build_dir/build.ninja" ]; then
  meson setup "$build_dir" "$@"
fi
meson compile -C "$build_dir" -j "$(nproc)"
status=0
meson test -C "$build_dir" --print-errorlogs || status=$?
python3 scripts/summarize_tests.py "$build_dir" || status=1
exit $status
