#!/usr/bin/env bash
# How long an environment for one torch version takes to make, with venv + pip and with uv, the first time and a
# second time (a second environment of the same torch: what `torchconform upgrade` makes when the extra requirements
# change). Prints one line per measurement; docs/upgrade.md records the run that chose uv.
#
#   ci/upgrade-env-bench.sh [TORCH_VERSION]     (default 2.14.1: a CUDA build, ~5.5 GB installed, on the local store)
#
# Uses a scratch directory on the same filesystem as the cache (uv hard-links from its cache only there) and
# removes the environments afterwards; uv's and pip's caches are left warm on purpose for the "second" runs and
# emptied for the "first" ones.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${1:-2.14.1}"
PY="${TORCHCONFORM_VENV:-$ROOT/.venv}/bin/python"
SCRATCH="${TORCHCONFORM_BENCH_DIR:-$HOME/.cache/torchconform/env-bench}"
BASE="$(command -v python3.11 || command -v python3)"
mkdir -p "$SCRATCH"
"$PY" -m pip install --disable-pip-version-check -q uv
UV="$(dirname "$PY")/uv"
export UV_CACHE_DIR="$SCRATCH/uv-cache" PIP_CACHE_DIR="$SCRATCH/pip-cache"
# uv reads no pip.conf: the same find-links and indexes as pip, as tools/envs.py hands them over
FLAGS=()
while IFS= read -r line; do
  key="${line%%=*}"; value="${line#*=}"; value="${value//\'/}"
  case "${key##*.}" in
    find-links) for v in $value; do FLAGS+=("--find-links=$v"); done ;;
    extra-index-url) for v in $value; do FLAGS+=("--extra-index-url=$v"); done ;;
    index-url) FLAGS+=("--index-url=$value") ;;
  esac
done < <("$PY" -m pip config list 2>/dev/null)

measure() {  # label command...
  local t0=$SECONDS
  "${@:2}" >"$SCRATCH/last.log" 2>&1 || { tail -n 20 "$SCRATCH/last.log" >&2; exit 1; }
  printf '%-34s %4d s\n' "$1" $((SECONDS - t0))
}
pip_env() { rm -rf "$1"; "$BASE" -m venv "$1" && "$1/bin/python" -m pip install -q --disable-pip-version-check \
  "torch==$VERSION" numpy jsonschema; }
uv_env() { rm -rf "$1"; "$UV" venv -q --python "$BASE" "$1" && "$UV" pip install -q --python "$1/bin/python" \
  --index-strategy unsafe-best-match "${FLAGS[@]}" "torch==$VERSION" numpy jsonschema; }

echo "torch==$VERSION, scratch $SCRATCH ($(df -h "$SCRATCH" | awk 'NR==2 {print $1}'))"
rm -rf "$PIP_CACHE_DIR" "$UV_CACHE_DIR"
measure "venv + pip, first (cold cache)" pip_env "$SCRATCH/pip-a"
measure "venv + pip, second (warm cache)" pip_env "$SCRATCH/pip-b"
measure "uv, first (cold cache)" uv_env "$SCRATCH/uv-a"
measure "uv, second (warm cache)" uv_env "$SCRATCH/uv-b"
du -sh "$SCRATCH/pip-b" "$SCRATCH/uv-b" | sed 's/^/installed: /'
echo "disk used by both uv environments together: $(du -sch "$SCRATCH/uv-a" "$SCRATCH/uv-b" | tail -n 1 | cut -f1) (hard links count once)"
rm -rf "$SCRATCH/pip-a" "$SCRATCH/pip-b" "$SCRATCH/uv-a" "$SCRATCH/uv-b"
