#!/usr/bin/env bash
# The test command: set-up (idempotent), build (C++ core, CLI, gtest, Python module), then ctest, the CMake package's
# consumer project (ci/cpp-consumer.sh) and pytest.
# JUnit XML of both lands in build/test-results/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="$ROOT/build"
PY="${TORCHCONFORM_VENV:-$ROOT/.venv}/bin/python"
RESULTS="$BUILD/test-results"
mkdir -p "$RESULTS"

ci/build.sh
echo "== AOTInductor packages of golden/'s exported programs (compiled once per torch version, then cached)"
"${PY%/python}/torchconform" compile golden --device all --jobs "${TORCHCONFORM_JOBS:-2}"
echo "== ctest (C++: comparator unit tests, one test per golden case x input set x device)"
ctest --test-dir "$BUILD" --output-on-failure -j "${TORCHCONFORM_JOBS:-2}" --output-junit "$RESULTS/ctest.xml"
echo "== find_package(torchconform) from a C++ project (examples/cpp_consumer: golden/ and the examples' corpus)"
ci/cpp-consumer.sh
echo "== pytest (exporters, Python <-> C++ bitwise, CLI and bindings negative controls, plugin)"
TORCHCONFORM_RUN="$BUILD/cpp_runner/torchconform-run" "$PY" -m pytest --junitxml="$RESULTS/pytest.xml" "$@"
