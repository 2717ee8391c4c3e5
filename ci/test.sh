#!/usr/bin/env bash
# The test command: set-up (idempotent), build, then the GoogleTest suite through ctest and the pytest suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${TORCHCONFORM_BUILD_DIR:-$ROOT/build}"
PY="${TORCHCONFORM_VENV:-$ROOT/.venv}/bin/python"

ci/build.sh
echo "== ctest (C++: comparator unit tests, one test per golden case x input set x device)"
ctest --test-dir "$BUILD" --output-on-failure -j "${TORCHCONFORM_JOBS:-2}"
echo "== pytest (exporters, determinism, C++ CLI negative controls)"
TORCHCONFORM_RUN="$BUILD/cpp_runner/torchconform-run" "$PY" -m pytest "$@"
