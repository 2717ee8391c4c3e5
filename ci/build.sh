#!/usr/bin/env bash
# Set up (idempotent) and build everything into build/: the runner library, the torchconform-run CLI, the
# GoogleTest suite and the Python module, installed into the venv as an editable package (`import torchconform`,
# the `torchconform` command, the pytest plugin). A second run only rebuilds what changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/ci/setup.sh"
PY="${TORCHCONFORM_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
echo "[build] cmake + ninja through scikit-build-core into build/ (first build: several minutes on 2 cores)" >&2
# --no-build-isolation: build against the venv's torch (an isolated build would fetch a multi-GB CUDA wheel).
# Two jobs: compiling against LibTorch takes 1-2 GB a translation unit.
LOG="$ROOT/build/pip-install.log"
mkdir -p "$ROOT/build"
set +e
CMAKE_BUILD_PARALLEL_LEVEL="${TORCHCONFORM_JOBS:-2}" "$PY" -m pip install --no-build-isolation --no-deps \
  --disable-pip-version-check -v -e "$ROOT" -Ccmake.define.TORCHCONFORM_BUILD_TESTS=ON 2>&1 \
  | tee "$LOG" | grep --line-buffered -oE "\[[0-9]+/[0-9]+\] (Building|Linking) .*" >&2
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  grep -v "^WARNING: Location" "$LOG" | tail -n 60 >&2
  echo "[build] failed; full log: $LOG" >&2
  exit 1
fi
test -x "$ROOT/build/cpp_runner/torchconform-run"
"$PY" -c "import torchconform, torchconform._core as c; print('[build] torchconform._core against LibTorch', c.libtorch_version())" >&2
