#!/usr/bin/env bash
# Sets up, builds and runs the main job: `minipipe train cnn` on the bundled digits set
# (about 10 seconds). Arguments replace the default command, e.g.
#   bash scripts/main.sh train gpt        # a byte-level GPT on the bundled novel (~3.6 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build
fi
# Only the command and the library it needs; scripts/test.sh builds the tests and benchmarks.
meson compile -C build -j "$(nproc)" examples/minipipe/minipipe:executable
if [ $# -eq 0 ]; then
  set -- train cnn
fi
./build/examples/minipipe/minipipe "$@"
