#!/usr/bin/env bash
# Regenerates the PyTorch reference files into a fresh folder and checks minipipe against
# them, so that the committed files cannot drift from what PyTorch computes. Skips (exit
# 77) where Debian's python3-torch is not installed.
set -euo pipefail
test_binary=$1
script_dir=$(dirname "$0")
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 cannot import torch (apt-get install python3-torch to run this check)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
/usr/bin/python3 "$script_dir/make_reference.py" "$out"
MINIPIPE_REFERENCE_DIR="$out" "$test_binary"
