#!/usr/bin/env bash
# Every `cpp` block of docs/api.md is a whole program: build each against the installed
# library (tests/install_test.sh: headers and pkg-config only) and run it.
set -euo pipefail
build_dir=$1
guide=$2
here=$(dirname "$0")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$guide" "$work" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"```cpp\n(.*?)```", text, re.S)
if not blocks:
    sys.exit("no cpp blocks in " + sys.argv[1])
for i, block in enumerate(blocks):
    open(f"{sys.argv[2]}/api_example_{i}.cpp", "w").write(block)
print(f"{len(blocks)} examples")
PY
# A block whose first line asks for it runs under mpirun as well, where this build has MPI and
# mpirun is installed (and says so where not: the one-process run still checks the program).
mpi_ready=yes
command -v mpirun > /dev/null || mpi_ready="no mpirun (install openmpi-bin)"
grep -q "MINIPIPE_HAS_MPI 1" "$build_dir/minipipe_config.h" || mpi_ready="this build has no MPI"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_mpi_yield_when_idle=1
for example in "$work"/api_example_*.cpp; do
  echo "== $(basename "$example")"
  np=$(sed -n '1s|^// api_guide_test: also under mpirun -np \([0-9]*\)$|\1|p' "$example")
  if [ -n "$np" ] && [ "$mpi_ready" != yes ]; then echo "-- not under mpirun: $mpi_ready"; np=""; fi
  INSTALL_TEST_MPIRUN_NP=$np bash "$here/install_test.sh" "$build_dir" "$example"
done
