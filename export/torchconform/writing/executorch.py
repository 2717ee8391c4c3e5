"""ExecuTorch programs (``torchconform export --executorch``): every exported program of a case lowered to an
ExecuTorch program (.pte) twice, with the portable/optimized CPU kernels and with the XNNPACK delegate, each written
as a variant of kind ``executorch_program`` that the runner's ExecuTorch runtime runs from C++ and compares with the
goldens and, call by call, with the TorchScript artifact. A lowering that fails is recorded as a strict expected
failure with its message, as a failed torch.export capture is.

Needs the ``executorch`` package (ci/executorch.sh sets up an environment with it: ExecuTorch 1.5.1 with torch
2.14.1); the runner needs ExecuTorch's C++ runtime built in (the same script builds one)."""

from __future__ import annotations

import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from .digest import sha256_file

# What the variants are called beside their program (`export` -> `export_et`, `export_et_xnnpack`) and how each
# lowering is made.
LOWERINGS = (("et", "portable and optimized CPU kernels", None),
             ("et_xnnpack", "the XNNPACK delegate, the rest on the CPU kernels", "xnnpack"))
COPIED = ("input_sets", "inputs", "int_outputs_as_tensors", "pytree_types", "tolerance")


def available() -> str:
    """'' when ExecuTorch's exporter imports here, else why not."""
    try:
        import executorch.exir  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure is the reason
        return f"the executorch package does not import here ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    return ""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:500] if text else ''}"


def lower(program: torch.export.ExportedProgram, delegate: str | None) -> bytes:
    from executorch.exir import to_edge_transform_and_lower

    partitioner = []
    if delegate == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioner = [XnnpackPartitioner()]
    return to_edge_transform_and_lower(program, partitioner=partitioner).to_executorch().buffer


def variants(case_name: str, program: torch.export.ExportedProgram, entry: dict[str, Any],
             case_dir: Path) -> list[dict[str, Any]]:
    """The ExecuTorch variants of one exported-program variant (``entry``: its manifest entry, already written)."""
    from torch.utils._pytree import treespec_dumps

    out = []
    for suffix, what, delegate in LOWERINGS:
        name = f"{entry['name']}_{suffix}"
        transform = ("executorch.exir.to_edge_transform_and_lower(program"
                     + (", partitioner=[XnnpackPartitioner()]" if delegate else "") + ").to_executorch()")
        v: dict[str, Any] = {"name": name, "kind": "executorch_program",
                             "description": f"{case_name}'s {entry['name']} program lowered to ExecuTorch ({what})",
                             "transform": transform}
        v.update({k: entry[k] for k in COPIED if k in entry})
        t0 = time.perf_counter()
        try:
            data = lower(program, delegate)
        except Exception as e:  # noqa: BLE001 - recorded as the variant's expected failure, with its message
            v.update({"error": _first_line(e), "findings": [], "details": {},
                      "xfail": {"reason": f"ExecuTorch cannot lower this program ({'XNNPACK' if delegate else 'CPU'}"
                                          f" kernels): {_first_line(e)}"}})
            out.append(v)
            continue
        seconds = time.perf_counter() - t0
        path = case_dir / "variants" / f"{name}.pte"
        path.write_bytes(data)
        v.update({"file": f"variants/{path.name}", "sha256": sha256_file(path), "bytes": path.stat().st_size,
                  "runtimes": ["executorch"],
                  "in_spec": treespec_dumps(program.call_spec.in_spec),
                  "out_spec": treespec_dumps(program.call_spec.out_spec),
                  "findings": [],
                  "details": {"executorch": version("executorch"),
                              "lowering_seconds": round(seconds, 2)}})
        out.append(v)
    return out
