"""How much the TorchScript variants (frozen, optimized, passes) add to a corpus, and whether deriving them from the
artifact where they are checked would reproduce them (issue 31, point 7). For each variant: its size beside the
artifact's, the time torch.jit.freeze (the C++ pass LibTorch's torch::jit::freeze runs) and optimize_for_inference
take on the loaded artifact, and whether the derived module gives the stored variant's outputs bit for bit on the
case's plain forward sets.

    .venv/bin/python dev/measure_variants.py golden
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils import _pytree as pytree


def derive(name: str, artifact: Path) -> Any:
    base = torch.jit.load(str(artifact)).eval()
    if name == "frozen":
        return torch.jit.freeze(base)
    if name == "optimized":
        return torch.jit.optimize_for_inference(torch.jit.freeze(base))
    return None  # "passes": a pipeline of graph passes, not one LibTorch call


def same_outputs(stored: Any, derived: Any, case: Path, manifest: dict[str, Any]) -> tuple[int, int]:
    equal = total = 0
    for s in manifest["input_sets"]:
        if s.get("method", "forward") != "forward" or s.get("prelude"):
            continue
        inputs = torch.load(case / s["inputs"]["file"], weights_only=True)
        args = inputs if isinstance(inputs, (list, tuple)) else (inputs,)
        total += 1
        try:
            torch.manual_seed(0)
            a = stored(*args)
            torch.manual_seed(0)
            b = derived(*args)
        except Exception:  # noqa: BLE001 - counted as not equal
            continue
        la = [t for t in pytree.tree_leaves(a) if isinstance(t, torch.Tensor)]
        lb = [t for t in pytree.tree_leaves(b) if isinstance(t, torch.Tensor)]
        equal += len(la) == len(lb) and all(torch.equal(x, y) for x, y in zip(la, lb))
    return equal, total


def main(root: Path) -> None:
    artifacts = variants = 0
    for path in sorted(root.glob("*/manifest.json")):
        manifest, case = json.loads(path.read_text()), path.parent
        if "artifact" not in manifest:
            continue
        artifact = case / manifest["artifact"]["file"]
        for v in manifest.get("variants", []):
            if v["name"] not in ("frozen", "passes", "optimized") or "file" not in v:
                continue
            size = (case / v["file"]).stat().st_size
            artifacts += artifact.stat().st_size
            variants += size
            what = (f"{case.name}:{v['name']}: {size / 1e3:.0f} kB stored "
                    f"(artifact {artifact.stat().st_size / 1e3:.0f} kB)")
            try:
                stored = torch.jit.load(str(case / v["file"]))
            except Exception as e:  # noqa: BLE001 - a finding
                print(f"{what}; the stored variant does not load ({str(e).splitlines()[0][:80]})")
                continue
            t0 = time.perf_counter()
            derived = derive(v["name"], artifact)
            ms = (time.perf_counter() - t0) * 1e3
            if derived is None:
                print(f"{what}; not derivable by one LibTorch call")
                continue
            equal, total = same_outputs(stored, derived, case, manifest)
            print(f"{what}; derived in {ms:.0f} ms; bitwise equal to the stored variant on {equal}/{total} sets")
    print(f"variants: {variants / 1e6:.2f} MB beside {artifacts / 1e6:.2f} MB of artifacts")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "golden"))
