#!/usr/bin/env bash
# Installs the build into a temporary prefix and compiles a program against it using only
# the installed headers and the pkg-config file, as a user outside this tree would; the
# program then runs against the installed library, found by its SONAME.
set -euo pipefail
build_dir=$1
source_file=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build_dir" --no-rebuild --destdir "$stage" --quiet
option() {
  meson introspect "$build_dir" --buildoptions | python3 -c \
    'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))' "$1"
}
prefix=$(option prefix)
# A sanitized library needs a sanitized program.
sanitize=$(option b_sanitize)
sanitize_flags=""
if [ "$sanitize" != "none" ]; then sanitize_flags="-fsanitize=$sanitize"; fi
pc_file=$(find "$stage" -name minipipe.pc | head -n 1)
export PKG_CONFIG_PATH=$(dirname "$pc_file")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}  # and where its requirements are
# The .pc file is relocatable: it finds the staged prefix from its own place, multiarch
# library folder and all, with no --define-variable.
flags=$(${PKG_CONFIG:-pkg-config} --cflags --libs minipipe)
[[ "$flags" == *"$stage"* ]] || { echo "FAIL: pkg-config gave '$flags', outside the staged install $stage"; exit 1; }
program="$stage/$(basename "$source_file" .cpp)"
g++ -std=c++20 -O2 $sanitize_flags "$source_file" $flags -o "$program"
lib_dir=$(dirname "$(find "$stage" -name 'libminipipe.so' | head -n 1)")
cd "$stage"
# INSTALL_TEST_MPIRUN_NP=N: run the program under mpirun -np N as well (tests/api_guide_test.sh).
launcher=()
if [ -n "${INSTALL_TEST_MPIRUN_NP:-}" ]; then launcher=(mpirun -np "$INSTALL_TEST_MPIRUN_NP" -x LD_LIBRARY_PATH); fi
case "$(basename "$source_file")" in
  fit_sine.cpp) LD_LIBRARY_PATH="$lib_dir" "$program" --steps 300 ;;
  *) LD_LIBRARY_PATH="$lib_dir" "$program" "$stage/model.safetensors"
     if [ ${#launcher[@]} -gt 0 ]; then
       echo "-- under ${launcher[*]:0:3}"
       # Open MPI keeps allocations from MPI_Init to the end, which LeakSanitizer would report.
       ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" LD_LIBRARY_PATH="$lib_dir" timeout 300 \
         "${launcher[@]}" "$program" "$stage/model.safetensors"
     fi ;;
esac
