#!/usr/bin/env bash
# ExecuTorch as a third C++ runtime beside TorchScript and AOTInductor: the built-in cases exported with every
# torch.export program also lowered to ExecuTorch programs (.pte: CPU kernels, and the XNNPACK delegate) and bundled
# with their input sets and goldens (.bpte, ExecuTorch's BundledProgram), then verified from C++ by a torchconform-run
# whose ExecuTorch runtime is built in (ExecuTorch's C++ Module API), against the goldens and, call by call, against
# each case's TorchScript artifact; ExecuTorch's own bundled-program check must agree with those verdicts
# (torchconform bundle-check); the migration report gets its ExecuTorch rows; tests/python/test_executorch.py runs
# with the skip turned into a failure. TORCHCONFORM_ET_BENCH=1 also benchmarks the models with ExecuTorch's columns.
# Not part of ci/test.sh: ExecuTorch's wheel pulls torchao, pandas, coremltools and more, and wants torch 2.14.
#
#   ci/executorch.sh    # writes $DIR/executorch/{corpus,report.json,verify.txt,report.md,bundle-check.txt,...}
#
# Sets up what it needs, idempotently, under $TORCHCONFORM_COMPAT_DIR (default .compat/): a venv with torch==2.14.1
# (a CUDA build from the local wheel store, runs on the CPU), executorch==1.5.1 (the release validated with torch
# 2.14) and cmake>=3.28 from PyPI (ExecuTorch's CMake package defines its targets only from 3.28), and torchconform
# built into it (build tree $DIR/build-executorch; the configure step finds ExecuTorch's package and says so).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DIR="${TORCHCONFORM_COMPAT_DIR:-$ROOT/.compat}"
VENV="$DIR/venv-executorch"
OUT="$DIR/executorch"
log() { printf '[executorch] %s\n' "$*" >&2; }
start=$(date +%s)
mkdir -p "$OUT"

if ! "$VENV/bin/python" -c "import torch, executorch.exir, scikit_build_core, pybind11, jsonschema, hypothesis; \
assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
  log "setting up $VENV: torch==2.14.1 executorch==1.5.1 (pinned exactly; executorch pulls torchao, pandas, ...)"
  [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "torch==2.14.1" "executorch==1.5.1" \
    "cmake>=3.28" ninja pybind11 scikit-build-core numpy jsonschema pytest hypothesis
fi
PY="$VENV/bin/python"
ET_PREFIX="$("$PY" -c 'import executorch; print(list(executorch.__path__)[0])')"

log "building torchconform with ExecuTorch's runtime into $DIR/build-executorch (first build: several minutes)"
PATH="$VENV/bin:$PATH" CMAKE_PREFIX_PATH="$ET_PREFIX" CMAKE_BUILD_PARALLEL_LEVEL="${TORCHCONFORM_JOBS:-2}" \
  "$PY" -m pip install --no-build-isolation --no-deps --disable-pip-version-check -q \
  -Cbuild-dir="$DIR/build-executorch" "$ROOT" >"$OUT/build.log" 2>&1 || { tail -n 40 "$OUT/build.log" >&2; exit 1; }
TC="$VENV/bin/torchconform"
RUN="$VENV/bin/torchconform-run"
# (a runner that found no ExecuTorch package would report every ExecuTorch variant as not run: stop here instead)
"$RUN" "$ROOT/golden" --result "process_outputs/*" --quiet >"$OUT/runtimes.txt" 2>&1 || true
if ! grep -q "executorch yes" "$OUT/runtimes.txt"; then
  log "the runner was built without ExecuTorch's runtime (see $OUT/build.log and $DIR/build-executorch)"; exit 1
fi

log "export the built-in cases with --bundled (ExecuTorch programs and their BundledPrograms) -> $OUT/corpus"
"$TC" export --bundled --out "$OUT/corpus" --force 2>&1 | tee "$OUT/export.log" >&2
log "compile the exported programs (AOTInductor, cached by program hash)"
"$TC" compile "$OUT/corpus" --jobs "${TORCHCONFORM_JOBS:-2}" 2>&1 | tail -n 3 >&2
log "verify from C++ (torchconform-run)"
set +e
"$RUN" "$OUT/corpus" --json "$OUT/report.json" --quiet >"$OUT/verify.txt" 2>&1
rc=$?
set -e
grep -E "^runtimes:|_et(_xnnpack)?[@/]|^summary" "$OUT/verify.txt" >&2 || true

# docs/coverage.md: with default options the generated sets at the program's bounds must find what the written sets
# (batch <= 4) miss: both ExecuTorch programs of simple_cnn fail past the batch their memory was planned for. Those
# results are the finding; any other result that is not PASS or XFAIL still fails this script.
set +e
"$PY" - "$OUT/report.json" <<'PYEOF'
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
found = [r for r in rows if r["case"] == "simple_cnn" and "_et" in r["artifact"]
         and r["input_set"] == "bound_in0_d0_max" and r["verdict"] in ("FAIL", "ERROR")]
for r in found:
    print(f"[executorch] finding of the generated sets: {r['case']}:{r['artifact']}/{r['input_set']} {r['verdict']}: "
          f"{(r.get('error') or r.get('message') or '').splitlines()[0][:200]}", file=sys.stderr)
variants = {r["artifact"] for r in rows if r["case"] == "simple_cnn" and "_et" in r["artifact"]}
if not variants or {r["artifact"] for r in found} != variants:
    print(f"[executorch] the generated bound sets did NOT find ExecuTorch's batch failure on simple_cnn (ExecuTorch "
          f"variants {sorted(variants)}, failing at the maximum batch: {sorted(r['artifact'] for r in found)})",
          file=sys.stderr)
    sys.exit(1)
known = {(r["case"], r["artifact"], r["input_set"]) for r in rows if r["case"] == "simple_cnn" and "_et" in
         r["artifact"] and r["input_set"].startswith("bound_") and r["verdict"] in ("FAIL", "ERROR")}
other = [r for r in rows if r["verdict"] not in ("PASS", "XFAIL")
         and (r["case"], r["artifact"], r["input_set"]) not in known]
for r in other:
    print(f"[executorch] unexpected: {r['case']}:{r['artifact']}/{r['input_set']} {r['verdict']}", file=sys.stderr)
sys.exit(2 if other else 0)
PYEOF
rc=$?
set -e
if [ "$rc" = 1 ]; then exit 1; fi

log "the migration report with its ExecuTorch rows -> $OUT/report.md"
"$TC" report "$OUT/corpus" --results "$OUT/report.json" --out "$OUT/report.md" --json "$OUT/migration.json" --quiet \
  || true  # (its exit status is the run's, checked above)
grep -E "^\| [a-z_]+ \| [a-z_]+ \| (yes|no)" "$OUT/report.md" >&2 || true

log "ExecuTorch's own bundled-program check against the runner's verdicts (torchconform bundle-check)"
set +e
"$TC" bundle-check "$OUT/corpus" --results "$OUT/report.json" --json "$OUT/bundle-check.json" \
  >"$OUT/bundle-check.txt" 2>&1
bundle_rc=$?
set -e
tail -n 1 "$OUT/bundle-check.txt" >&2
if [ "$bundle_rc" != 0 ]; then
  log "bundle-check FAILED (exit $bundle_rc): ExecuTorch's check and torchconform disagree or could not run:"
  grep -vE "^AGREE" "$OUT/bundle-check.txt" >&2 || true
  exit 1
fi

log "tests/python/test_executorch.py (export --bundled, agreement, and its negative controls)"
if ! TORCHCONFORM_REQUIRE_EXECUTORCH=1 TORCHCONFORM_RUN="$RUN" "$PY" -m pytest -q -p no:cacheprovider \
     "$ROOT/tests/python/test_executorch.py" >"$OUT/test_executorch.txt" 2>&1; then
  tail -n 40 "$OUT/test_executorch.txt" >&2
  log "tests/python/test_executorch.py failed"
  exit 1
fi
tail -n 1 "$OUT/test_executorch.txt" >&2


# Negative control: simple_cnn/b4_32x32's golden moved by 1e-3 at [2, 7] (re-signed) must FAIL both ExecuTorch
# variants on that set, and only there.
rm -rf "$OUT/perturbed" && cp -r "$OUT/corpus" "$OUT/perturbed"
"$PY" - "$OUT/perturbed" <<'PYEOF'
import sys, torch
from pathlib import Path
sys.path.insert(0, "tests/python")
from conftest import rehash
corpus = Path(sys.argv[1])
path = corpus / "simple_cnn" / "sets" / "b4_32x32.expected.pt"
expected = torch.load(path, weights_only=True)
expected[2, 7] += 1e-3
torch.save(expected, path)
rehash(corpus, "simple_cnn")
PYEOF
WRITTEN=()  # the written sets only: the generated ones have findings of their own (above)
for set_name in trace_example b4_32x32 b2_48x40 b1_33x33; do WRITTEN+=(--result "simple_cnn:*_et*/$set_name"); done
"$RUN" "$OUT/perturbed" --case simple_cnn "${WRITTEN[@]}" --quiet >"$OUT/perturbed.txt" 2>&1 || true
failed="$(grep -c '^FAIL' "$OUT/perturbed.txt" || true)"
if [ "$failed" != 2 ] || [ "$(grep '^FAIL' "$OUT/perturbed.txt" | grep -c '/b4_32x32 ')" != 2 ]; then
  log "negative control FAILED: expected exactly the two ExecuTorch results on b4_32x32 to fail:"
  cat "$OUT/perturbed.txt" >&2
  exit 1
fi
log "negative control: the perturbed golden fails both ExecuTorch variants on b4_32x32, nothing else"
if [ "${TORCHCONFORM_ET_BENCH:-0}" = 1 ]; then
  log "torchconform bench with ExecuTorch's columns -> $OUT/bench"
  "$TC" bench "$OUT/corpus" --out "$OUT/bench" --threads 1 --skip-suite --skip-compile --skip-spec --quiet
  grep -A12 "^## Latency" "$OUT/bench/bench.md" >&2
fi
log "done in $(( $(date +%s) - start )) s (exit $rc): $OUT/verify.txt, $OUT/report.json"
exit $rc
