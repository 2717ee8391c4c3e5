#!/usr/bin/env bash
# The GPU machine's check: everything torchconform claims for CUDA, run once on a machine with an NVIDIA GPU and a
# CUDA build of PyTorch in $PYTHON (default python3). It needs no GoogleTest, no network and no pip index:
#
#   ci/device-check.sh --stage            # here, once: the headers and wheels it needs, under build/third_party
#   ci/device-check.sh OUT_DIR            # there (carry build/third_party): results in OUT_DIR/results.tgz
#   python dev/device_report.py OUT_DIR/results.tgz > docs/device-results.md   # back here
#
# Steps, each timed and logged, each going on after a failure (a failure is a finding, not the end of the run):
#  1. environment: card, driver, CUDA, cuDNN, torch, Python;
#  2. build torchconform-run and torchconform._core against that torch's LibTorch (its TorchConfig.cmake, CUDA
#     included: the wheel-headers fallback would give a CPU-only runner);
#  3. the committed corpus (golden/, exported with another torch: downgrade data): AOTInductor packages for cuda
#     (`torchconform compile --device cuda`, timed per package), then torchconform-run --device cuda and --device
#     cuda --allow-tf32 (what TF32 would cost);
#  4. the built-in cases and examples/my_cases.py exported with this torch, compiled and verified the same way (the
#     same-version CUDA result, whatever the downgrade gives);
#  5. dev/device_measure.py on both corpora: half precision on CUDA, sampling on CUDA;
#  6. the three corpora on cpu with this torch (packages compiled for cpu), last: a run cut short loses the least;
#  7. the CUDA-aware Python tests (tests/python/test_cross_language.py, test_runner_cli.py) on that machine.
# Everything lands in a work directory that is re-packed into OUT_DIR/results.tgz after every step, so a run stopped
# by its time limit still returns what it finished.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAGE="$ROOT/build/third_party"
if [ "${1:-}" = "--stage" ]; then
  mkdir -p "$STAGE/include" "$STAGE/wheels"
  cp -r /usr/include/nlohmann "$STAGE/include/"
  # OpenSSL's headers (SHA-256 of corpus files); the machine's own libcrypto.so.3 is linked (OpenSSL 3 ABI).
  rm -rf "$STAGE/include/openssl" && cp -r /usr/include/openssl "$STAGE/include/"
  cp /usr/include/x86_64-linux-gnu/openssl/* "$STAGE/include/openssl/" 2>/dev/null || true
  # jsonschema for exports without the core (only if the core cannot be built there).
  "${PYTHON:-.venv/bin/python}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$STAGE/wheels" \
    jsonschema jsonschema-specifications referencing rpds-py
  echo "staged in $STAGE: $(du -sh "$STAGE" | cut -f1)"; exit 0
fi
OUT="$(mkdir -p "${1:?usage: ci/device-check.sh OUT_DIR | --stage}" && cd "$1" && pwd)"
PY="${PYTHON:-python3}"
W="${TORCHCONFORM_DEVICE_WORK:-/tmp/torchconform-device}"
R="$W/results"
B="${TORCHCONFORM_DEVICE_BUILD:-$W/build}"  # (another build directory: for a dry run of this script without a GPU)
rm -rf "$W" && mkdir -p "$R"
export TORCHCONFORM_AOTI_CACHE="$W/aoti" PYTHONUNBUFFERED=1
T0=$(date +%s)
pack() {  # (steps run in parallel: each packs into its own temporary name, then renames)
  tar czf "$OUT/.results.tgz.$BASHPID" -C "$W" results 2>/dev/null && mv "$OUT/.results.tgz.$BASHPID" "$OUT/results.tgz"
}
# step NAME COMMAND...: runs it with its output in results/NAME.log, records exit status and seconds
step() {
  local name="$1"; shift
  local s; s=$(date +%s)
  echo "== $name: $*" | tee -a "$R/steps.txt"
  "$@" > "$R/$name.log" 2>&1
  local rc=$?
  echo "$name exit=$rc seconds=$(( $(date +%s) - s )) elapsed=$(( $(date +%s) - T0 ))" | tee -a "$R/steps.txt"
  tail -n 3 "$R/$name.log" | sed 's/^/   | /'
  pack
  return $rc
}

environment() {
  date -u +"date: %FT%TZ"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || echo "nvidia-smi: none"
  nvcc --version | tail -n 2 || echo "nvcc: none"
  "$PY" -c "
import torch, platform, sysconfig, os
print('torch', torch.__version__, '| cuda', torch.version.cuda, '| cudnn', torch.backends.cudnn.version(),
      '| device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, '| python',
      platform.python_version())
print('python headers:', os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"
  nproc; uname -r
  ls /usr/include/openssl/evp.h 2>&1; ldconfig -p | grep -E 'libcrypto.so.3 ' || true
}
step environment environment
cp "$R/environment.log" "$R/environment.txt"

HAVE_PYH=$("$PY" -c "import os, sysconfig; print('ON' if os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')) else 'OFF')")
CM=(-DTORCHCONFORM_BUILD_TESTS=OFF -DTORCHCONFORM_BUILD_PYTHON="$HAVE_PYH" -DTORCHCONFORM_PYTHON="$PY"
    -DTORCHCONFORM_TORCH_WITHOUT_CMAKE_CONFIG=OFF)
# (used only where CMake finds no nlohmann_json package)
[ -f "$STAGE/include/nlohmann/json.hpp" ] && CM+=(-DTORCHCONFORM_JSON_INCLUDE_DIR="$STAGE/include")
if [ ! -f /usr/include/openssl/evp.h ] && [ -f "$STAGE/include/openssl/evp.h" ]; then
  CRYPTO=$(ldconfig -p | awk '/libcrypto\.so\.3 .*x86-64/ {print $NF; exit}')
  CM+=(-DOPENSSL_INCLUDE_DIR="$STAGE/include" -DOPENSSL_CRYPTO_LIBRARY="$CRYPTO")
fi
TARGETS=(torchconform-run)
[ "$HAVE_PYH" = ON ] && TARGETS+=(_core)
if ! step configure cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release "${CM[@]}"; then
  # The wheel's TorchConfig.cmake wants a complete CUDA toolkit. Without one: the wheel's headers and CPU libraries
  # (the project's fallback), plus its CUDA libraries linked in explicitly (--no-as-needed: nothing references them
  # by symbol, their static initialisers register CUDA), found at run time through their own RPATHs.
  TL=$("$PY" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
  rm -rf "$B"
  step configure-without-torchconfig cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release "${CM[@]}" \
    -DTORCHCONFORM_TORCH_WITHOUT_CMAKE_CONFIG=ON \
    "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--no-as-needed $TL/libtorch_cuda.so $TL/libc10_cuda.so -Wl,--as-needed" \
    || { echo "configure failed"; exit 2; }
fi
step build cmake --build "$B" -j "$(nproc)" --target "${TARGETS[@]}" || { echo "build failed"; exit 2; }
RUN="$B/cpp_runner/torchconform-run"
export TORCHCONFORM_RUN="$RUN"
HAVE_CORE=0
if [ "$HAVE_PYH" = ON ]; then
  cp "$B"/bindings/_core*.so export/torchconform/ && HAVE_CORE=1
else
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$W/site" "$STAGE"/wheels/*.whl
fi
export PYTHONPATH="$ROOT/export${PYTHONPATH:+:$PYTHONPATH}:$W/site"
TC=("$PY" -m torchconform)

# verify NAME CORPUS DEVICE: the runner's JSON report and lines; on cuda also with --allow-tf32 (what TF32 costs)
verify() {
  step "$1-verify-$3" "$RUN" "$2" --device "$3" --json "$R/$1-$3.json" --quiet
  [ "$3" = cuda ] && step "$1-verify-cuda-tf32" "$RUN" "$2" --device cuda --allow-tf32 --json "$R/$1-cuda-tf32.json" --quiet
  return 0
}
compile() {  # compile NAME CORPUS DEVICE: AOTInductor packages, one timed line per package
  if [ "$HAVE_CORE" = 1 ]; then
    step "$1-compile-$3" "${TC[@]}" compile "$2" --device "$3"
  else
    echo "$1-compile-$3: skipped: no Python headers here, so no torchconform._core to plan packages" | tee -a "$R/steps.txt"
  fi
}

# The two exports, then every AOTInductor compile at once (each is mostly one compiler process; the machine has many
# cores), the CPU packages in the background while the CUDA runs go on; the CPU columns (downgrade data) come last:
# a run cut short loses the least.
step export-builtin "${TC[@]}" export --out "$W/corpus" --force --keep-going &
step export-examples "${TC[@]}" export --cases examples/my_cases.py --out "$W/examples" --force --keep-going &
wait
cp "$W"/corpus/corpus.json "$R/builtin-corpus.json" 2>/dev/null
CORPORA=("golden golden" "builtin $W/corpus" "examples $W/examples")
( for c in "${CORPORA[@]}"; do set -- $c; compile "$1" "$2" cpu; done ) &
CPU_COMPILES=$!
for c in "${CORPORA[@]}"; do set -- $c; compile "$1" "$2" cuda & done
wait_cuda() { for j in $(jobs -p); do [ "$j" = "$CPU_COMPILES" ] || wait "$j"; done; }
wait_cuda
for c in "${CORPORA[@]}"; do set -- $c; verify "$1" "$2" cuda; done
if [ "$HAVE_CORE" = 1 ]; then
  step measure-golden "$PY" dev/device_measure.py golden "$R/golden-measure.json"
  step measure-builtin "$PY" dev/device_measure.py "$W/corpus" "$R/builtin-measure.json"
fi
wait "$CPU_COMPILES"
for c in "${CORPORA[@]}"; do set -- $c; verify "$1" "$2" cpu; done
[ "$HAVE_CORE" = 1 ] && step pytest-cuda "$PY" -m pytest -q -p no:cacheprovider tests/python/test_cross_language.py \
  tests/python/test_runner_cli.py
echo "total: $(( $(date +%s) - T0 )) s" | tee -a "$R/steps.txt"
pack
