#!/usr/bin/env bash
# find_package(torchconform) from a C++ project: installs the CMake package from build/ (ci/build.sh made it) into
# build/cmake-package, configures examples/cpp_consumer against it with golden/ and the examples' corpus, builds it
# and runs its ctest (one test per result x device, discovered by the runner when ctest starts; the AOTInductor
# compile fixture; a program linked to the library).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="$ROOT/build"
VENV="${TORCHCONFORM_VENV:-$ROOT/.venv}"
PREFIX="$BUILD/cmake-package"
CONSUMER="$BUILD/cpp-consumer"
EXAMPLES="$BUILD/examples-corpus"

rm -rf "$PREFIX"
cmake --install "$BUILD" --component torchconform_cmake --prefix "$PREFIX" > /dev/null
if [ ! -f "$EXAMPLES/corpus.json" ] || [ examples/my_cases.py -nt "$EXAMPLES/corpus.json" ]; then
  "$VENV/bin/torchconform" export --cases examples/my_cases.py --out "$EXAMPLES" --force --quiet
fi
cmake -S examples/cpp_consumer -B "$CONSUMER" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX" \
      -DTORCHCONFORM_PYTHON="$VENV/bin/python" -DCORPORA="$ROOT/golden;$EXAMPLES" > /dev/null
cmake --build "$CONSUMER"
ctest --test-dir "$CONSUMER" --output-on-failure -j "${TORCHCONFORM_JOBS:-2}"
