#!/usr/bin/env bash
# The model zoo: real torchvision, timm and transformers models (dev/zoo_cases.py: random weights, small inputs, nothing
# downloaded) exported, compiled and verified from C++ and from the pytest plugin with torch 2.14.1 +
# torchvision 0.29.1 (torchvision does not import beside the pinned 2.13.0), then docs/zoo.md written from the run.
# Not part of ci/test.sh: the small reproductions of what the zoo found run there (tests/python/test_model_gaps.py).
#
#   ci/zoo.sh              # writes $DIR/zoo/{corpus,report.json,plugin.txt} and docs/zoo.md
#
# Sets up what it needs, idempotently, under $TORCHCONFORM_COMPAT_DIR (default .compat/, shared with ci/executorch.sh):
# a venv with torch==2.14.1 (a CUDA build from the local wheel store, ~5.5 GB, runs on the CPU), torchvision==0.29.1,
# transformers, timm and the build tools, and torchconform built and installed into it (build tree $DIR/build-zoo; the
# configure step sees a CUDA wheel without a CUDA toolkit and uses its CPU libraries, see CMakeLists.txt).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${TORCHCONFORM_COMPAT_DIR:-$ROOT/.compat}"
VENV="$DIR/venv-2.14.1"
OUT="$DIR/zoo"
log() { printf '[zoo] %s\n' "$*" >&2; }
start=$(date +%s)
mkdir -p "$OUT"

if ! "$VENV/bin/python" -c "import torch, torchvision, transformers, timm, scikit_build_core, pybind11, jsonschema, pytest; \
assert torch.__version__.startswith('2.14.1') and torchvision.__version__.startswith('0.29.1')" 2>/dev/null; then
  log "setting up $VENV: torch==2.14.1 torchvision==0.29.1 transformers (pinned exactly: a CUDA build, ~5.5 GB)"
  [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "torch==2.14.1" "torchvision==0.29.1" \
    transformers "timm==1.0.31" pybind11 scikit-build-core ninja numpy jsonschema pytest
fi
PY="$VENV/bin/python"

log "building torchconform against LibTorch 2.14.1 into $DIR/build-zoo (first build: several minutes)"
CMAKE_BUILD_PARALLEL_LEVEL="${TORCHCONFORM_JOBS:-2}" "$PY" -m pip install --no-build-isolation --no-deps \
  --disable-pip-version-check -q -Cbuild-dir="$DIR/build-zoo" "$ROOT" >"$OUT/build.log" 2>&1 \
  || { tail -n 40 "$OUT/build.log" >&2; exit 1; }
TC="$VENV/bin/torchconform"
# torchvision's operators (nms, roi_align...) live in its extension library, which the runner loads on request only.
# The pip wheel's library is a Python extension: it needs libtorch_python.so and libpython's symbols, so those are
# loaded first (a C++ deployment builds torchvision's C++ library instead, which needs neither).
mapfile -t TV_LIBS < <("$PY" - <<'PYEOF'
import pathlib, sysconfig, torch, torchvision
print(pathlib.Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("INSTSONAME"))
print(pathlib.Path(torch.__file__).parent / "lib" / "libtorch_python.so")
print(next(pathlib.Path(torchvision.__file__).parent.glob("_C*.so")))
PYEOF
)
RUN_LIBS=()
for lib in "${TV_LIBS[@]}"; do RUN_LIBS+=(--load-library "$lib"); done
# (inside Python, libpython and libtorch_python are there already: the plugin's runner child loads torchvision's only)
PLUGIN_LIBS=("--torchconform-load-library=${TV_LIBS[2]}")
log "operator libraries for the runner: ${TV_LIBS[*]}"

log "export dev/zoo_cases.py -> $OUT/corpus"
"$TC" export --cases "$ROOT/dev/zoo_cases.py" --out "$OUT/corpus" --force --keep-going 2>&1 | tee "$OUT/export.log" >&2 \
  || log "some cases failed to export (listed above and in $OUT/export.log); the others are verified"
log "compile the exported programs (AOTInductor, cached by program hash)"
"$TC" compile "$OUT/corpus" --import torchvision 2>&1 | tee "$OUT/compile.log" >&2 || true
log "verify from C++ (torchconform-run)"
set +e
"$VENV/bin/torchconform-run" "$OUT/corpus" "${RUN_LIBS[@]}" --json "$OUT/report.json" --quiet >"$OUT/verify.txt" 2>&1
verify_rc=$?
log "verify from the pytest plugin"
(cd "$OUT" && "$PY" -m pytest -p no:cacheprovider -q -o addopts= "--torchconform-corpus=$OUT/corpus" \
  "${PLUGIN_LIBS[@]}" >"$OUT/plugin.txt" 2>&1)
plugin_rc=$?
set -e
tail -n 1 "$OUT/verify.txt" >&2
tail -n 1 "$OUT/plugin.txt" >&2
"$PY" "$ROOT/dev/zoo_report.py" "$OUT" "$ROOT/docs/zoo.md" --verify-rc "$verify_rc" --plugin-rc "$plugin_rc" \
  --seconds "$(( $(date +%s) - start ))"
log "wrote docs/zoo.md ($(( $(date +%s) - start )) s)"
