#!/usr/bin/env bash
# Sets up, builds and runs the main job: fit a small network with autograd.
# (The `minipipe train` command takes its place once the training issue lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
meson compile -C build -j "$(nproc)"
./build/examples/fit_sine "$@"
