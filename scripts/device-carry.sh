#!/usr/bin/env bash
# Packs what a bare GPU machine lacks to build and test minipipe into .device-carry/
# (git-ignored, about 15 MiB): the headers of Eigen, CLI11 and zlib, GoogleTest's sources
# (built there, by that machine's compiler, so that no C++ ABI has to match), and pkg-config
# files whose paths are relative to themselves. zlib is linked as the machine's own
# libz.so.1, which every Linux has (Debian's libz.a is not position-independent):
# gpu-check.sh links it in as .device-carry/lib/libz.so. Run it
# here, on Debian with scripts/install-deps.sh done; then, on the GPU machine, with
# .device-carry carried along: bash scripts/gpu-check.sh (see its header).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
carry=.device-carry
rm -rf "$carry"
mkdir -p "$carry/include" "$carry/lib" "$carry/pkgconfig" "$carry/src"
cp -r /usr/include/eigen3 "$carry/include/"
cp -r /usr/include/CLI "$carry/include/"
cp /usr/include/zlib.h /usr/include/zconf.h "$carry/include/"
cp -r /usr/src/googletest/googletest "$carry/src/"
cp -r /usr/include/gtest "$carry/include/"

# name, version, cflags, libs: a .pc file rooted at the carry folder.
write_pc() {
  cat > "$carry/pkgconfig/$1.pc" <<PC
prefix=\${pcfiledir}/..
Name: $1
Description: $1 carried for the GPU machine (scripts/device-carry.sh)
Version: $2
Cflags: $3
Libs: $4
PC
}
write_pc eigen3 "$(pkg-config --modversion eigen3)" "-I\${prefix}/include/eigen3" ""
write_pc CLI11 "$(pkg-config --modversion CLI11)" "-I\${prefix}/include" ""
write_pc zlib "$(pkg-config --modversion zlib)" "-I\${prefix}/include" "-L\${prefix}/lib -lz"
write_pc gtest "$(pkg-config --modversion gtest)" "-I\${prefix}/include" "\${prefix}/lib/libgtest.a -lpthread"
write_pc gtest_main "$(pkg-config --modversion gtest)" "-I\${prefix}/include" \
  "\${prefix}/lib/libgtest_main.a \${prefix}/lib/libgtest.a -lpthread"
du -sh "$carry"
