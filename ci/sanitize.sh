#!/usr/bin/env bash
# Build torchconform-run with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/) and run the mutation
# test against it. LibTorch itself is not instrumented; our code (reader, runner, comparator, isolation) is.
# About 5 minutes on 2 cores. Not part of ci/test.sh.
#
#   ci/sanitize.sh [--count N] [--seed S]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ci/build.sh
PY="${TORCHCONFORM_VENV:-$ROOT/.venv}/bin/python"
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTORCHCONFORM_BUILD_TESTS=OFF \
  -DTORCHCONFORM_BUILD_PYTHON=OFF -DTORCHCONFORM_PYTHON="$PY" \
  -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_EXE_LINKER_FLAGS="$SAN" >/dev/null
cmake --build build-asan -j "${TORCHCONFORM_JOBS:-2}" --target torchconform-run
# Leak checking off: LibTorch keeps global registries alive to exit. Any ASan/UBSan report aborts the process,
# which the mutation test counts (runner death or CRASH).
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
echo "== golden corpus under ASan/UBSan"
build-asan/cpp_runner/torchconform-run golden --quiet | tail -1
echo "== mutation test under ASan/UBSan"
"$PY" tests/python/mutation.py --runner build-asan/cpp_runner/torchconform-run "$@"
