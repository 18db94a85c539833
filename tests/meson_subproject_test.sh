#!/usr/bin/env bash
# examples/meson_subproject as a user would build it, twice: against a staged install found
# by Meson through pkg-config, then, with no minipipe installed, with minipipe as a
# subproject (the source tree in subprojects/minipipe, where the wrap would fetch it). Each
# time the program is built and run.
set -euo pipefail
build_dir=$1
source_root=$2
sanitize=$(meson introspect "$build_dir" --buildoptions | python3 -c \
  'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"))')
if [ "$sanitize" != "none" ]; then
  echo "a build-system check: it runs with the plain build, not under the sanitizers"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
example() {  # a fresh copy of the example, as a user's own project
  rm -rf "$work/project"
  cp -r "$source_root/examples/meson_subproject" "$work/project"
}

echo "== dependency('minipipe') from a staged install, through pkg-config"
meson install -C "$build_dir" --no-rebuild --destdir "$work/stage" --quiet
pc_file=$(find "$work/stage" -name minipipe.pc | head -n 1)
example
rm -rf "$work/project/subprojects"  # no fallback: pkg-config must find it
PKG_CONFIG_PATH=$(dirname "$pc_file") meson setup "$work/installed" "$work/project" > "$work/setup.log"
grep -q "Run-time dependency minipipe found: YES" "$work/setup.log" ||
  { cat "$work/setup.log"; echo "FAIL: Meson did not find the installed minipipe"; exit 1; }
meson compile -C "$work/installed" > /dev/null
LD_LIBRARY_PATH=$(dirname "$(find "$work/stage" -name 'libminipipe.so' | head -n 1)") "$work/installed/uses_minipipe"

echo "== dependency('minipipe') falling back to the subproject"
example
ln -s "$(cd "$source_root" && pwd)" "$work/project/subprojects/minipipe"
# Only the subproject may satisfy the dependency (on a machine with minipipe installed, forced).
# Unoptimised (buildtype plain, for both projects): this checks how the build finds and
# builds minipipe, not its speed, and -O0 halves the minute the library takes to compile.
force=()
if PKG_CONFIG_PATH= pkg-config --exists minipipe 2>/dev/null; then force=(--force-fallback-for=minipipe); fi
PKG_CONFIG_PATH= meson setup "$work/subproject" "$work/project" --wrap-mode=nodownload "${force[@]}" \
  -Dminipipe:cuda=disabled -Dbuildtype=plain -Dminipipe:buildtype=plain > "$work/setup.log"
grep -q "Executing subproject minipipe" "$work/setup.log" ||
  { cat "$work/setup.log"; echo "FAIL: the subproject was not used"; exit 1; }
meson compile -C "$work/subproject" -j "${MESON_SUBPROJECT_JOBS:-2}" > /dev/null
"$work/subproject/uses_minipipe"
