#!/usr/bin/env bash
# gpu.sh - build clipscore against the PyTorch installed on a GPU machine
# (no apt there) and run the benchmark on CUDA. Run from the repository root:
#
#   bench/gpu.sh [extra bench.py options]        e.g. --pairs 512
#
# Needs: python3 with a CUDA torch, cmake >= 3.18, gcc/g++, an NVIDIA GPU.
# The C libraries come as Debian .deb files fetched beforehand on a Debian
# machine (see bench/README.md, "GPU") into bench/work/debs/; they are only
# unpacked here (dpkg-deb -x, or ar + tar where dpkg is missing).
# Environment: DEBS (the .deb folder), TORCH_CMAKE_PREFIX (a folder holding
# Torch/TorchConfig.cmake, if torch.utils.cmake_prefix_path is not it),
# PAIRS (default 1024), BUILD_ONLY=1 (stop after the build: tests this
# script on a machine without a GPU). Results and logs also go to $OUT.
set -euo pipefail

ROOT=$(pwd)
DEBS=${DEBS:-$ROOT/bench/work/debs}
PFX=$ROOT/bench/work/prefix
BUILD=$ROOT/build-gpu
PY=${PYTHON:-python3}
JOBS=$(nproc)
say() { printf '\n== %s\n' "$*"; }

say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader ||
  [ -n "${BUILD_ONLY:-}" ] || { echo "gpu.sh: no nvidia-smi"; exit 1; }
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
"$PY" -c 'import numpy, PIL' || { echo "gpu.sh: bench.py needs numpy and Pillow in $PY"; exit 1; }
for t in cmake cc c++; do command -v $t >/dev/null || { echo "gpu.sh: $t not found"; exit 1; }; done

say "unpacking the C libraries from $DEBS"
ls "$DEBS"/*.deb >/dev/null || { echo "gpu.sh: no .deb files in $DEBS (see bench/README.md)"; exit 1; }
rm -rf "$PFX" && mkdir -p "$PFX"
for d in "$DEBS"/*.deb; do
  if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$d" "$PFX"
  else  # a .deb is an ar archive holding data.tar.*
    tmp=$(mktemp -d); (cd "$tmp" && ar x "$d" && tar -xf data.tar.* -C "$PFX"); rm -rf "$tmp"
  fi
done
ARCHLIB=$PFX/usr/lib/x86_64-linux-gnu
# The .pc files say /usr; point them at the prefix.
sed -i -E "s#^([A-Za-z_]+)=/usr#\1=$PFX/usr#" "$ARCHLIB"/pkgconfig/*.pc "$PFX"/usr/share/pkgconfig/*.pc 2>/dev/null || true
export PKG_CONFIG_PATH=$ARCHLIB/pkgconfig:$PFX/usr/share/pkgconfig
export LD_LIBRARY_PATH=$ARCHLIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
PKGCONF=$(command -v pkg-config || echo "$PFX/usr/bin/pkgconf")

say "finding torch's CMake files"
TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
PREFIX_CMAKE=${TORCH_CMAKE_PREFIX:-$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')}
ABI=$("$PY" -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')
echo "torch at $TORCH_DIR, CMake files at $PREFIX_CMAKE, C++11 ABI $ABI"

configure() {  # $1: folder with Torch/TorchConfig.cmake
  rm -rf "$BUILD"
  cmake -B "$BUILD" -S "$ROOT" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$1;$PFX/usr" -DPKG_CONFIG_EXECUTABLE="$PKGCONF" \
    -DCSV_INCLUDE_DIR="$PFX/usr/include" -DCSV_LIBRARY="$ARCHLIB/libcsv.so" \
    -DSTB_INCLUDE_DIR="$PFX/usr/include/stb" \
    -DZLIB_INCLUDE_DIR="$PFX/usr/include" -DZLIB_LIBRARY="$ARCHLIB/libz.so" \
    -DCLIPSCORE_FIGURES=OFF -DCLIPSCORE_FETCH=OFF -DCLIPSCORE_BUILD_TESTS=OFF \
    -DCLIPSCORE_FATAL_WARNINGS=OFF  # a newer compiler/torch may warn where ours did not
}

say "configuring"
if ! configure "$PREFIX_CMAKE" > "$PFX/configure.log" 2>&1; then
  # TorchConfig.cmake of a CUDA wheel insists on a CUDA toolkit (nvcc) even
  # though clipscore compiles no CUDA code. Without one, describe the wheel's
  # libraries directly; --no-as-needed keeps libtorch_cuda.so linked, which
  # registers the CUDA backend when it loads.
  tail -5 "$PFX/configure.log"
  echo "falling back to a minimal Torch config (libraries and headers of $TORCH_DIR)"
  mkdir -p "$PFX/torchcfg/Torch"
  cat > "$PFX/torchcfg/Torch/TorchConfig.cmake" <<EOF
add_library(torch_wheel INTERFACE IMPORTED)
set_target_properties(torch_wheel PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "$TORCH_DIR/include;$TORCH_DIR/include/torch/csrc/api/include"
  INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=$ABI"
  INTERFACE_LINK_LIBRARIES "-Wl,--no-as-needed;$TORCH_DIR/lib/libtorch_cuda.so;$TORCH_DIR/lib/libc10_cuda.so;-Wl,--as-needed;$TORCH_DIR/lib/libtorch.so;$TORCH_DIR/lib/libtorch_cpu.so;$TORCH_DIR/lib/libc10.so;-Wl,-rpath,$TORCH_DIR/lib")
set(TORCH_LIBRARIES torch_wheel)
set(TORCH_INCLUDE_DIRS "$TORCH_DIR/include;$TORCH_DIR/include/torch/csrc/api/include")
set(Torch_FOUND TRUE)
EOF
  configure "$PFX/torchcfg" > "$PFX/configure.log" 2>&1 || { tail -30 "$PFX/configure.log"; exit 1; }
fi

say "building"
cmake --build "$BUILD" -j"$JOBS" --target clipscore > "$PFX/build.log" 2>&1 || { tail -40 "$PFX/build.log"; exit 1; }
"$BUILD/clipscore" --version
[ -z "${BUILD_ONLY:-}" ] || exit 0

say "benchmark on CUDA (fp16)"
status=0
"$PY" bench/bench.py --gpu --pairs "${PAIRS:-1024}" --bin "$BUILD/clipscore" \
  --json "$ROOT/bench/work/results-gpu.json" "$@" || status=$?
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
if [ -n "${OUT:-}" ]; then
  cp "$ROOT"/bench/work/results-gpu.json "$ROOT"/bench/work/*.log "$PFX"/*.log "$OUT"/ 2>/dev/null || true
fi
exit $status
