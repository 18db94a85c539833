#!/usr/bin/env bash
# Builds the course's playground: one self-contained HTML page (docs/course/playground.html by
# default) holding minipipe's schedule generators, validator and simulator compiled to
# WebAssembly with Emscripten (Debian: apt-get install emscripten), inlined so that the page
# opens from disk with no network.
#   scripts/build-playground.sh [OUTPUT.html]
# Exits 77 (skipped) when em++ is not installed: nothing else needs the playground.
set -euo pipefail
cd "$(dirname "$0")/.."
output=$(realpath -m "${1:-docs/course/playground.html}")
command -v em++ > /dev/null || { echo "skipped: no em++ (apt-get install emscripten builds the playground)"; exit 77; }
# Debian's emscripten finds its JavaScript packages (acorn) here, whichever node runs it.
export NODE_PATH=/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# What the simulator needs, and nothing that computes tensors: the link fails naming any
# symbol a new dependency brings in. Compiled in step with the page (WASM_ASYNC_COMPILATION=0):
# the page is ready when it has loaded, which the browser test relies on.
sources=(pipeline/schedule.cpp pipeline/v_schedule.cpp pipeline/schedule_spec.cpp pipeline/schedule_csv.cpp
         pipeline/pipedream.cpp pipeline/zb_auto.cpp pipeline/prediction.cpp pipeline/simulator.cpp
         pipeline/simulate_spec.cpp pipeline/validator.cpp pipeline/weight_versions.cpp pipeline/charts.cpp
         pipeline/trace.cpp nn/json_reader.cpp examples/playground/playground.cpp)
flags=(-std=c++20 -O2 -fexceptions -I.)
pids=()
for source in "${sources[@]}"; do
  em++ "${flags[@]}" -c "$source" -o "$work/$(echo "$source" | tr / _).o" & pids+=($!)
  if [ ${#pids[@]} -ge "$(nproc)" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid"; done
em++ -O2 -fexceptions "$work"/*.o -o "$work/playground.js" -sMODULARIZE=1 -sEXPORT_NAME=createPlayground \
  -sSINGLE_FILE=1 -sWASM_ASYNC_COMPILATION=0 -sALLOW_MEMORY_GROWTH=1 -sEXPORTED_FUNCTIONS=_playground_simulate,_playground_schedules \
  -sEXPORTED_RUNTIME_METHODS=cwrap,ccall
python3 - examples/playground/page.html "$work/playground.js" "$output" <<'PY'
import sys
page, module, output = sys.argv[1:]
text = open(page).read()
code = open(module).read()
assert "</script" not in code, "the module's code would end the page's script element"
open(output, "w").write(text.replace("/*PLAYGROUND_MODULE*/", code, 1))
PY
echo "playground written to $output ($(stat -c %s "$output") bytes)"
