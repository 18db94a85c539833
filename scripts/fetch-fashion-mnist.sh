#!/usr/bin/env bash
# Puts the full Fashion-MNIST set (60000 + 10000 images, MIT licence) into
# data/fashion-mnist/, taken from Debian's dataset-fashion-mnist package, and checks it.
set -euo pipefail
cd "$(dirname "$0")/.."
target=data/fashion-mnist
mkdir -p "$target"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -d /usr/share/datasets/fashion-mnist ]; then
  source_dir=/usr/share/datasets/fashion-mnist
else
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  chown _apt "$work" 2>/dev/null || true  # lets apt download unsandboxed-warning-free
  (cd "$work" && apt-get download dataset-fashion-mnist >/dev/null)
  dpkg -x "$work"/dataset-fashion-mnist_*.deb "$work/unpacked"
  source_dir="$work/unpacked/usr/share/datasets/fashion-mnist"
fi
cp "$source_dir"/*-ubyte.gz "$target/"
(cd "$target" && sha256sum --check --quiet <<'SUMS'
b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7  train-images-idx3-ubyte.gz
0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056  train-labels-idx1-ubyte.gz
cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa  t10k-images-idx3-ubyte.gz
8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05  t10k-labels-idx1-ubyte.gz
SUMS
)
echo "Fashion-MNIST is in $target (checksums verified)"
