#!/usr/bin/env bash
# Idempotent project set-up: a venv at .venv with the pinned torch and the build/test tools,
# and GoogleTest from Debian. Quick when everything is already there.
#
#   ci/setup.sh            # creates/updates .venv, installs libgtest-dev if missing
#
# Environment:
#   TORCHCONFORM_VENV   venv location (default: <repo>/.venv)
#   PYTHON              interpreter used to create the venv (default: python3.11, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TORCHCONFORM_VENV:-$ROOT/.venv}"
# torch is pinned exactly: a range would let pip pull a multi-GB CUDA build.
TORCH_PIN="torch==2.13.0"
# pytest and pytest-xdist are pinned as a pair: pytest 9.2 ignores the node-id suffix by which xdist 3.8's
# `--dist loadgroup` keeps an xdist_group on one worker, so every worker re-ran the groups' module fixtures
# (test_layout.py's test_xdist_groups_hold checks it).
PY_DEPS=(pybind11 scikit-build-core ninja pytest==9.1.1 pytest-xdist==3.8.0 numpy matplotlib jsonschema hypothesis)
STAMP="$VENV/.torchconform-setup"
STAMP_VALUE="$TORCH_PIN ${PY_DEPS[*]}"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- C++ dependencies from Debian: GoogleTest, nlohmann-json (manifest parsing), OpenSSL's libcrypto (SHA-256) ----
APT_MISSING=()
[ -f /usr/include/gtest/gtest.h ] || APT_MISSING+=(libgtest-dev)
[ -f /usr/include/nlohmann/json.hpp ] || APT_MISSING+=(nlohmann-json3-dev)
[ -f /usr/include/openssl/evp.h ] || APT_MISSING+=(libssl-dev)
if [ ${#APT_MISSING[@]} -gt 0 ]; then
  log "installing ${APT_MISSING[*]} from Debian"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_MISSING[@]}" >/dev/null
fi
command -v cmake >/dev/null || { log "cmake not found on PATH"; exit 1; }

# --- Python venv -------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  PY="${PYTHON:-}"
  if [ -z "$PY" ]; then
    if command -v python3.11 >/dev/null; then PY=python3.11; else PY=python3; fi
  fi
  log "creating venv $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_VALUE" ] \
   && "$VENV/bin/python" -c "import torch, pybind11, pytest, xdist, numpy, scikit_build_core, matplotlib, jsonschema, hypothesis" 2>/dev/null; then
  log "venv up to date ($VENV)"
else
  log "installing $TORCH_PIN ${PY_DEPS[*]} into $VENV"
  PIP_LOG="$VENV/pip-install.log"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check "$TORCH_PIN" "${PY_DEPS[@]}" >"$PIP_LOG" 2>&1; then
    tail -n 40 "$PIP_LOG" >&2
    log "pip install failed (full log: $PIP_LOG)"
    exit 1
  fi
  echo "$STAMP_VALUE" > "$STAMP"
fi

"$VENV/bin/python" - <<'PY'
import torch, sys
v = torch.__version__.split("+")[0]
if v != "2.13.0":
    sys.exit(f"[setup] expected torch 2.13.0 in the venv, found {torch.__version__}")
print(f"[setup] torch {torch.__version__} (cuda: {torch.version.cuda}), python {sys.version.split()[0]}", file=sys.stderr)
PY
