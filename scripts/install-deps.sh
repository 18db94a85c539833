#!/usr/bin/env bash
# Installs what minipipe needs to build and test on Debian 12, from Debian's packages.
# CUDA is optional: with nvcc in /usr/local/cuda (or on PATH) the CUDA code builds too.
#   scripts/install-deps.sh [--tests]   (--tests: also what only the tests use)
set -euo pipefail
# Open MPI (libopenmpi-dev, openmpi-bin): pipelines across processes under mpirun.
packages=(meson ninja-build g++ pkg-config python3 zlib1g-dev libeigen3-dev libgtest-dev libgmock-dev libcli11-dev
          libopenmpi-dev openmpi-bin)
# Only the tests use: chromium-headless-shell (the test that opens `minipipe report`'s page and
# screenshots it) and procps (pgrep, with which the MPI test finds one rank to interrupt).
if [ "${1:-}" = "--tests" ]; then packages+=(chromium-headless-shell procps); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
