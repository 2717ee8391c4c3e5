#!/usr/bin/env bash
# The test command: set-up (idempotent), build (C++ core, CLI, gtest, Python module), then one of two tiers.
#
#   ci/test.sh [--heavy | --all] [--any-cpu] [PYTEST ARGS...]
#
#   (default)   the default tier, what CI runs: ctest (C++), the CMake package's consumer project
#               (ci/cpp-consumer.sh) and pytest -m "not heavy" on $TORCHCONFORM_JOBS (2) pytest-xdist workers
#   --heavy     the heavy tier: pytest -m heavy (the full mutation sweep, the slow end-to-end runs, the cpp_extension
#               builds); run it before resolving what it covers
#   --all       both tiers
#   --any-cpu   the chosen tier twice: at this CPU's own capability, then with ATEN_CPU_CAPABILITY=default (LibTorch's
#               portable kernels: another CPU's numbers, the way a CI machine with another ISA sees golden/); both
#               must pass. TORCHCONFORM_CPU_CAPABILITY=LEVEL runs a single pass at LEVEL (own: this CPU's).
#
# Further arguments go to pytest after the tier's own (a later -m or -n wins). JUnit XML lands in build/test-results/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="$ROOT/build"
PY="${TORCHCONFORM_VENV:-$ROOT/.venv}/bin/python"
RESULTS="$BUILD/test-results"
JOBS="${TORCHCONFORM_JOBS:-2}"

default=1 heavy=0 any_cpu=0
while [ $# -gt 0 ]; do
  case "$1" in
    --heavy) default=0 heavy=1 ;;
    --all) default=1 heavy=1 ;;
    --any-cpu) any_cpu=1 ;;
    *) break ;;
  esac
  shift
done

if [ "$any_cpu" = 1 ]; then
  args=()
  [ "$default" = 1 ] && [ "$heavy" = 1 ] && args+=(--all)
  [ "$default" = 0 ] && args+=(--heavy)
  for level in own default; do
    echo "== ci/test.sh ${args[*]:-} at CPU capability $level"
    start=$SECONDS
    TORCHCONFORM_CPU_CAPABILITY="$level" "$0" ${args[@]+"${args[@]}"} "$@"
    echo "== passed at CPU capability $level in $((SECONDS - start)) s"
  done
  exit 0
fi

case "${TORCHCONFORM_CPU_CAPABILITY:-}" in
  "") ;;
  own) unset ATEN_CPU_CAPABILITY ;;
  *) export ATEN_CPU_CAPABILITY="$TORCHCONFORM_CPU_CAPABILITY"
     echo "== ATEN_CPU_CAPABILITY=$ATEN_CPU_CAPABILITY for every process of this run" ;;
esac
mkdir -p "$RESULTS"

ci/build.sh
echo "== AOTInductor packages of golden/'s exported programs (compiled once per torch version, then cached)"
"${PY%/python}/torchconform" compile golden --device all --jobs "$JOBS"
export TORCHCONFORM_RUN="$BUILD/cpp_runner/torchconform-run"

if [ "$default" = 1 ]; then
  echo "== ctest (C++: comparator unit tests, one test per golden case x input set x device)"
  ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS" --output-junit "$RESULTS/ctest.xml"
  echo "== find_package(torchconform) from a C++ project (examples/cpp_consumer: golden/ and the examples' corpus)"
  ci/cpp-consumer.sh
  echo "== pytest, default tier (exporters, Python <-> C++ bitwise, CLI and bindings negative controls, plugin)"
  start=$SECONDS
  "$PY" -m pytest -m "not heavy" -n "$JOBS" --dist loadgroup --junitxml="$RESULTS/pytest.xml" "$@"
  echo "== pytest, default tier: $((SECONDS - start)) s"
fi
if [ "$heavy" = 1 ]; then
  echo "== pytest, heavy tier (the full mutation sweep, slow end-to-end runs, cpp_extension builds)"
  start=$SECONDS
  "$PY" -m pytest -m heavy -n "$JOBS" --dist loadgroup --junitxml="$RESULTS/pytest-heavy.xml" "$@"
  echo "== pytest, heavy tier: $((SECONDS - start)) s"
fi
