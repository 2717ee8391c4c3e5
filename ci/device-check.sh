#!/usr/bin/env bash
# The GPU machine's check (issue: CUDA, every artifact verified on a real GPU). On a machine with an NVIDIA GPU and a
# CUDA build of PyTorch in $PYTHON (default python3): build torchconform-run against that PyTorch's LibTorch, record
# the card, driver, CUDA and torch versions, and verify the committed corpus on cuda and on cpu. Everything lands in
# OUT_DIR: environment.txt, configure/build logs, <device>.txt (the runner's lines), <device>.json, <device>.xml,
# timing.txt. Needs no GoogleTest, no network, no pip.
#
#   ci/device-check.sh OUT_DIR [CORPUS]
#
# nlohmann-json: taken from the system if CMake finds it, else from build/third_party/include (stage it on a
# machine that has it with `ci/device-check.sh --stage`, then carry build/third_party to the GPU machine).
# Not done here yet: CUDA AOTInductor packages (they come with the torch.export artifacts).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "${1:-}" = "--stage" ]; then
  mkdir -p build/third_party/include && cp -r /usr/include/nlohmann build/third_party/include/
  echo "staged nlohmann-json in build/third_party/include"; exit 0
fi
OUT="${1:?usage: ci/device-check.sh OUT_DIR [CORPUS]}"
CORPUS="${2:-golden}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
t0=$(date +%s)
{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi: not available"
  nvcc --version 2>&1 | tail -n 2 || echo "nvcc: not available"
  "$PY" -c "import torch, platform; print('torch', torch.__version__, '| cuda', torch.version.cuda, '| cudnn',
torch.backends.cudnn.version(), '| device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
'| python', platform.python_version())"
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

JSON_INC=()
[ -f build/third_party/include/nlohmann/json.hpp ] && JSON_INC=(-DTORCHCONFORM_JSON_INCLUDE_DIR="$ROOT/build/third_party/include")
cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCHCONFORM_BUILD_TESTS=OFF \
  -DTORCHCONFORM_BUILD_PYTHON=OFF -DTORCHCONFORM_PYTHON="$PY" "${JSON_INC[@]}" > "$OUT/configure.log" 2>&1 \
  || { tail -n 30 "$OUT/configure.log"; echo "configure failed"; exit 2; }
cmake --build build-device -j "$(nproc)" --target torchconform-run > "$OUT/build.log" 2>&1 \
  || { tail -n 30 "$OUT/build.log"; echo "build failed"; exit 2; }
t1=$(date +%s)

status=0
for dev in cuda cpu; do
  s=$(date +%s)
  build-device/cpp_runner/torchconform-run "$CORPUS" --device "$dev" --json "$OUT/$dev.json" \
    --junit "$OUT/$dev.xml" --quiet > "$OUT/$dev.txt" 2>&1
  rc=$?
  echo "$dev: exit $rc ($(( $(date +%s) - s )) s)" | tee -a "$OUT/timing.txt"
  tail -n 1 "$OUT/$dev.txt"
  [ "$rc" -gt "$status" ] && status=$rc
done
echo "build: $(( t1 - t0 )) s, total: $(( $(date +%s) - t0 )) s" | tee -a "$OUT/timing.txt"
exit "$status"
