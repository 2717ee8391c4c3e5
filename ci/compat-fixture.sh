#!/usr/bin/env bash
# Re-makes tests/data/compat/torch-1.13.1: simple_cnn and process_outputs exported with Debian's PyTorch 1.13.1
# (python3-torch), committed so the default test run checks TorchScript's backward compatibility and the compat
# classification without installing an old torch. Run after changing those cases or the corpus format.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! /usr/bin/python3 -c "import torch, jsonschema" 2>/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-torch python3-numpy python3-jsonschema >/dev/null
fi
cd "$ROOT"
PYTHONPATH="$ROOT/export" /usr/bin/python3 -m torchconform export --case simple_cnn --case process_outputs \
  --out tests/data/compat/torch-1.13.1 --force
du -sh tests/data/compat/torch-1.13.1

# tests/data/compat/future-format: process_outputs from the corpus above with its artifact's archive `version` record
# set to 99, a TorchScript file format no PyTorch reads, re-signed: the deliberately broken cell of the matrix (every
# runtime must report a load failure with its message, never a crash).
FUT=tests/data/compat/future-format
rm -rf "$FUT"
mkdir -p "$FUT"
cp -r tests/data/compat/torch-1.13.1/process_outputs "$FUT/"
"$ROOT/.venv/bin/python" - "$FUT" <<'PY'
import hashlib, json, sys, zipfile
from pathlib import Path

root = Path(sys.argv[1])
case = root / "process_outputs"
art = case / "artifact.pt"
with zipfile.ZipFile(art) as z:
    entries = [(i, z.read(i.filename)) for i in z.infolist()]
with zipfile.ZipFile(art, "w", zipfile.ZIP_STORED) as z:
    for info, data in entries:
        z.writestr(info, b"99\n" if info.filename.endswith("/version") else data)
sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
m = json.loads((case / "manifest.json").read_text())
m["artifact"]["sha256"] = sha(art)
m["artifact"]["bytes"] = art.stat().st_size
(case / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
index = json.loads((root.parent / "torch-1.13.1" / "corpus.json").read_text())
index["cases"] = [c for c in index["cases"] if c["name"] == "process_outputs"]
index["cases"][0]["sha256"] = sha(case / "manifest.json")
(root / "corpus.json").write_text(json.dumps(index, indent=2) + "\n")
PY
du -sh tests/data/compat/*
