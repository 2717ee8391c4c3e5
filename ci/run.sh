#!/usr/bin/env bash
# The main job: set-up, build, export the golden corpus if it is missing, verify it on every available device
# with the C++ runner, and print the report. Exit status is the runner's: 0 pass, 1 mismatch, 2 error.
#
#   ci/run.sh [CORPUS]      (default: golden/)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${TORCHCONFORM_BUILD_DIR:-$ROOT/build}"
PY="${TORCHCONFORM_VENV:-$ROOT/.venv}/bin/python"
CORPUS="${1:-golden}"

ci/build.sh
if [ ! -f "$CORPUS/corpus.json" ]; then
  echo "== exporting $CORPUS (no corpus.json there)"
  PYTHONPATH="$ROOT/export" "$PY" -m torchconform export --out "$CORPUS"
fi
echo "== verifying $CORPUS with LibTorch (C++, no Python)"
set +e
"$BUILD/cpp_runner/torchconform-run" "$CORPUS" --device all \
  --json "$BUILD/report.json" --junit "$BUILD/report.xml"
rc=$?
set -e
echo "reports: $BUILD/report.json (JSON), $BUILD/report.xml (JUnit)"
exit $rc
