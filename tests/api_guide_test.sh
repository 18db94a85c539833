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
for example in "$work"/api_example_*.cpp; do
  echo "== $(basename "$example")"
  bash "$here/install_test.sh" "$build_dir" "$example"
done
