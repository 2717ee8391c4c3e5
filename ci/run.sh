#!/usr/bin/env bash
# The main job: set-up, build, export the golden corpus if it is missing, compile its torch.export programs into
# AOTInductor packages (cached), verify it on every available device with the C++ runner (torchconform-run), and
# print the Markdown report. Exit status is the runner's:
# 0 pass, 1 mismatch, 2 error.
#
#   ci/run.sh [CORPUS]      (default: golden/)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="$ROOT/build"
BIN="${TORCHCONFORM_VENV:-$ROOT/.venv}/bin"
CORPUS="${1:-golden}"

ci/build.sh
if [ ! -f "$CORPUS/corpus.json" ]; then
  echo "== exporting $CORPUS (no corpus.json there)"
  "$BIN/torchconform" export --out "$CORPUS"
fi
echo "== AOTInductor packages of $CORPUS's exported programs (compiled once per torch version, then cached)"
"$BIN/torchconform" compile "$CORPUS" --device all --jobs "${TORCHCONFORM_JOBS:-2}"
echo "== verifying $CORPUS with LibTorch (C++, no Python)"
rm -f "$BUILD/report.json" "$BUILD/report.xml" "$BUILD/report.md"  # never report on a previous run
set +e
"$BUILD/cpp_runner/torchconform-run" "$CORPUS" --device all --json "$BUILD/report.json" --junit "$BUILD/report.xml"
rc=$?
set -e
if [ -f "$BUILD/report.json" ]; then  # absent when the corpus could not be opened at all
  echo
  "$BIN/torchconform" report "$CORPUS" --results "$BUILD/report.json" --out "$BUILD/report.md"
  cat "$BUILD/report.md"
fi
echo "reports: $BUILD/report.md (Markdown), $BUILD/report.json (JSON), $BUILD/report.xml (JUnit)"
exit $rc
