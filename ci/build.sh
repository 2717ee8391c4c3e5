#!/usr/bin/env bash
# Set up (idempotent) and build the C++ runner, its tests and the CLI into build/ with ninja.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/ci/setup.sh"
BUILD="${TORCHCONFORM_BUILD_DIR:-$ROOT/build}"
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DTORCHCONFORM_PYTHON="${TORCHCONFORM_VENV:-$ROOT/.venv}/bin/python" >&2
fi
# Two cores: compiling against LibTorch takes ~1-2 GB a translation unit, so two jobs fit.
cmake --build "$BUILD" -j "${TORCHCONFORM_JOBS:-2}" >&2
