#!/usr/bin/env bash
# The PyTorch compatibility matrix (docs/compat.md): the golden corpus (torch 2.13.0) and re-exports of the built-in
# cases made with Debian's torch 1.13.1, torch 2.14.1 and torch 2.15.0 (the newest release), each verified by all four
# from Python and from C++; and the AOTInductor packages of golden/'s programs compiled by each version with
# AOTInductor, run by each other version's runner (the cross-version cells).
# Not part of ci/test.sh (the default test run stays on the pinned torch); the classification logic is tested there.
#
#   ci/compat.sh [extra torchconform compat options]      # writes build/compat/compat.md and compat.json
#
# Sets up what it needs, idempotently: the project build (ci/build.sh), Debian's python3-torch and libtorch-dev,
# a venv with torch==2.14.1 (a CUDA build from the local wheel store, ~5.5 GB, runs on the CPU), one with torch==2.15.0
# (from PyPI), and a torchconform-run built against each LibTorch under $TORCHCONFORM_COMPAT_DIR (default .compat/).
# A first run adds the installs, three runner builds (3-5 min each) and AOTInductor compiles with torch 2.14.1 and
# 2.15.0; docs/compat.md gives the measured run time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${TORCHCONFORM_COMPAT_DIR:-$ROOT/.compat}"
log() { printf '[compat] %s\n' "$*" >&2; }
mkdir -p "$DIR"
start=$(date +%s)

"$ROOT/ci/build.sh"

# --- torch 1.13.1 from Debian (Python: /usr/bin/python3; C++: /usr/include/torch, /usr/lib/*/libtorch*) ---------
if ! /usr/bin/python3 -c "import torch, numpy, jsonschema" 2>/dev/null || [ ! -f /usr/include/torch/script.h ]; then
  log "installing Debian's python3-torch and libtorch-dev (PyTorch 1.13.1)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-torch python3-numpy python3-jsonschema libtorch-dev >/dev/null
fi

# --- torch 2.14.1 in its own venv ------------------------------------------------------------------------------
VENV214="$DIR/venv-2.14.1"
if ! "$VENV214/bin/python" -c "import torch, numpy, jsonschema; assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
  log "creating $VENV214 with torch==2.14.1 (pinned exactly: a CUDA build, ~5.5 GB)"
  python3.11 -m venv "$VENV214"
  "$VENV214/bin/python" -m pip install --disable-pip-version-check -q "torch==2.14.1" numpy jsonschema
fi

# --- torch 2.15.0, the newest release, in its own venv -----------------------------------------------------------
# Not on the local disk: a CUDA build from PyPI (~3 GB download, ~5.4 GB installed; runs on the CPU). Where pip is
# capped at the local releases (/etc/xdg/pip, see the machine notes), this requirements file on main lifts the cap.
VENV215="$DIR/venv-2.15.0"
if ! "$VENV215/bin/python" -c "import torch, numpy, jsonschema; assert torch.__version__.startswith('2.15.0')" 2>/dev/null; then
  log "creating $VENV215 with torch==2.15.0 (pinned exactly: a CUDA build from PyPI, ~3 GB download)"
  python3.11 -m venv "$VENV215"
  "$VENV215/bin/python" -m pip install --disable-pip-version-check -q -r "$ROOT/ci/requirements-torch-2.15.txt"
fi

# --- a torchconform-run per LibTorch -----------------------------------------------------------------------------
build_runner() {  # name python [cmake options]
  local out="$DIR/build-$1"
  log "torchconform-run against LibTorch $1 ($out)"
  cmake -S "$ROOT" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCHCONFORM_PYTHON="$2" \
    -DTORCHCONFORM_BUILD_TESTS=OFF -DTORCHCONFORM_BUILD_PYTHON=OFF "${@:3}" >"$out.configure.log" 2>&1 \
    || { tail -n 30 "$out.configure.log" >&2; exit 1; }
  cmake --build "$out" --target torchconform-run -j "${TORCHCONFORM_JOBS:-2}" >"$out.build.log" 2>&1 \
    || { tail -n 40 "$out.build.log" >&2; exit 1; }
}
build_runner 1.13.1 /usr/bin/python3
# (a CUDA wheel: its TorchConfig.cmake wants the CUDA toolkit even for CPU use; see CMakeLists.txt)
build_runner 2.14.1 "$VENV214/bin/python" -DTORCHCONFORM_TORCH_WITHOUT_CMAKE_CONFIG=ON
build_runner 2.15.0 "$VENV215/bin/python" -DTORCHCONFORM_TORCH_WITHOUT_CMAKE_CONFIG=ON

"$ROOT/.venv/bin/torchconform" compat \
  --corpus "2.13.0:$ROOT/golden" \
  --corpus "control, future file format:$ROOT/tests/data/compat/future-format" \
  --runtime "1.13.1:/usr/bin/python3:$DIR/build-1.13.1/cpp_runner/torchconform-run" \
  --runtime "2.13.0:$ROOT/.venv/bin/python:$ROOT/build/cpp_runner/torchconform-run" \
  --runtime "2.14.1:$VENV214/bin/python:$DIR/build-2.14.1/cpp_runner/torchconform-run" \
  --runtime "2.15.0:$VENV215/bin/python:$DIR/build-2.15.0/cpp_runner/torchconform-run" \
  --reexport --out "$ROOT/build/compat" "$@" && status=0 || status=$?
log "done in $(( $(date +%s) - start )) s (exit $status): build/compat/compat.md"
exit $status
