"""ExecuTorch programs (``torchconform export --executorch``): every exported program of a case lowered to an
ExecuTorch program (.pte) twice, with the portable/optimized CPU kernels and with the XNNPACK delegate, each written
as a variant of kind ``executorch_program`` that the runner's ExecuTorch runtime runs from C++ and compares with the
goldens and, call by call, with the TorchScript artifact. A lowering that fails is recorded as a strict expected
failure with its message, as a failed torch.export capture is.

With ``bundled`` (``torchconform export --bundled``) each program is also written as an ExecuTorch BundledProgram
(``.bpte``): the same program with the case's input sets and goldens as ExecuTorch's own test cases, which
ExecuTorch's bundled-program check (``BundledModule.verify_result_with_bundled_expected_output``, on a device or in
``torchconform bundle-check``) runs without torchconform. It is built from the corpus's own files (the ``.pte`` and
the stored inputs and goldens), so what it checks is what torchconform checks.

Needs the ``executorch`` package (ci/executorch.sh sets up an environment with it: ExecuTorch 1.5.1 with torch
2.14.1); the runner needs ExecuTorch's C++ runtime built in (the same script builds one)."""

from __future__ import annotations

import hashlib
import io
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import torch

from ..dtypes import DEFAULT_RTOL_ATOL
from ..errors import CorpusInputError
from ..safeload import load_data
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


def variants(case_name: str, program: torch.export.ExportedProgram, entry: dict[str, Any], case_dir: Path,
             sets: list[dict[str, Any]] | None = None, tolerance: dict[str, Any] | None = None
             ) -> list[dict[str, Any]]:
    """The ExecuTorch variants of one exported-program variant (``entry``: its manifest entry, already written).
    With ``sets`` (the case's input-set records, files written) each program is also bundled with them (``bundle``),
    its goldens checked at ``tolerance`` (the case's policy, unless the program has its own)."""
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
                  "lowered_from": entry["name"], "runtimes": ["executorch"],
                  "in_spec": treespec_dumps(program.call_spec.in_spec),
                  "out_spec": treespec_dumps(program.call_spec.out_spec),
                  "findings": [],
                  "details": {"executorch": version("executorch"),
                              "lowering_seconds": round(seconds, 2)}})
        if sets is not None:
            v["bundled"] = bundle(case_dir, v, sets, v.get("tolerance") or tolerance or {})
        out.append(v)
    return out


# ---- BundledProgram (.bpte) -------------------------------------------------------------------------------------
def bundled_tolerance(expected: list[Any], policy: dict[str, Any]) -> tuple[float, float, list[str]]:
    """One (rtol, atol) for ExecuTorch's check, which has one pair per program: the loosest the case's policy gives
    any floating output (the runner's per-dtype defaults for mode allclose, 0/0 for exact, k*eps for k ULPs), and
    notes where that is not what the runner applies."""
    rules = [policy.get("default", {"mode": "allclose"}), *policy.get("outputs", {}).values()]
    notes = []
    if policy.get("outputs"):
        notes.append("the case's per-output tolerances are merged into one rtol/atol (the loosest): ExecuTorch's "
                     "check takes one pair per program")
    rtol = atol = 0.0
    for leaf in expected:
        if not isinstance(leaf, torch.Tensor) or not leaf.dtype.is_floating_point:
            continue
        default_rtol, default_atol = DEFAULT_RTOL_ATOL[leaf.dtype]
        for rule in rules:
            mode = rule.get("mode", "allclose")
            if mode == "allclose":
                rtol, atol = max(rtol, rule.get("rtol", default_rtol)), max(atol, rule.get("atol", default_atol))
            elif mode == "ulp":
                rtol = max(rtol, rule.get("max_ulp", 0) * torch.finfo(leaf.dtype).eps)
                notes.append("ExecuTorch's check has no ULP mode: max_ulp k is checked as rtol = k * eps")
    return rtol, atol, sorted(set(notes))


Reader = Callable[[str], bytes]  # a case file (path relative to the case directory) -> its checked bytes


def bundle_cases(read: Reader, variant: dict[str, Any], sets: list[dict[str, Any]]
               ) -> list[tuple[str, list[Any], list[Any]]]:
    """(input set, flat inputs, flat goldens) of every input set the program serves, read back from the corpus's
    files through ``read`` (at export, the writer's own files, hash-checked against their records; in bundle-check,
    the core's checked reader): the inputs flattened as the program takes them (positional arguments, then keyword
    arguments by name), the goldens as its outputs come (pytree leaves)."""
    from torch.utils._pytree import tree_flatten

    served = variant.get("input_sets") or [s["name"] for s in sets]
    by_name = {s["name"]: s for s in sets}
    out = []
    for name in served:
        s = by_name[name]
        stored = load_data(io.BytesIO(read(s["inputs"]["file"])))
        keywords = s.get("keywords", [])
        n = len(stored) - len(keywords)
        inputs, _ = tree_flatten((tuple(stored[:n]), dict(zip(keywords, stored[n:]))))
        expected, _ = tree_flatten(load_data(io.BytesIO(read(s["expected"]["file"]))))
        out.append((name, inputs, expected))
    return out


def bundle_bytes(pte: bytes, cases: list[tuple[str, list[Any], list[Any]]]) -> bytes:
    """An ExecuTorch BundledProgram of the program ``pte`` with ``cases`` as method "forward"'s test cases,
    serialized (deterministic: the same program and cases give the same bytes, which bundle-check relies on)."""
    import tempfile

    from executorch.devtools import BundledProgram
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    suite = MethodTestSuite("forward", [MethodTestCase(inputs=i, expected_outputs=e) for _, i, e in cases])
    with tempfile.TemporaryDirectory(prefix="torchconform-bundle-") as tmp:  # private: 0700
        path = Path(tmp) / "program.pte"
        path.write_bytes(pte)
        return serialize_from_bundled_program_to_flatbuffer(BundledProgram(None, [suite], pte_file_path=str(path)))


def _own_files(case_dir: Path, records: list[dict[str, Any]]) -> Reader:
    """The writer's reader of the files it has just written into ``case_dir``: each hash-checked against its record
    (nothing else has vouched for them yet: the corpus is not signed until the export ends)."""
    digests = {r["file"]: r.get("sha256") for r in records}

    def read(rel: str) -> bytes:
        data = (case_dir / rel).read_bytes()
        if digests.get(rel) and hashlib.sha256(data).hexdigest() != digests[rel]:
            raise CorpusInputError(f"{rel}: its SHA-256 is not the record's")
        return data

    return read


def bundle(case_dir: Path, variant: dict[str, Any], sets: list[dict[str, Any]], policy: dict[str, Any]
           ) -> dict[str, Any]:
    """Write ``variants/<name>.bpte`` for an ExecuTorch variant; its manifest record (file, hash, the input sets in
    test-case order, the tolerance for ExecuTorch's check), or ``{"error": why}`` where ExecuTorch cannot bundle it
    (e.g. a program with int outputs: BundledProgram holds tensor goldens only)."""
    try:
        read = _own_files(case_dir, [variant, *(s[k] for s in sets for k in ("inputs", "expected"))])
        cases = bundle_cases(read, variant, sets)
        rtol, atol, notes = bundled_tolerance([leaf for _, _, e in cases for leaf in e], policy)
        path = case_dir / "variants" / f"{variant['name']}.bpte"
        path.write_bytes(bundle_bytes(read(variant["file"]), cases))
    except Exception as e:  # noqa: BLE001 - recorded with the variant: this program has no bundle, and why
        return {"error": f"ExecuTorch cannot bundle this program's input sets and goldens: {_first_line(e)}"}
    return {"file": f"variants/{path.name}", "sha256": sha256_file(path), "bytes": path.stat().st_size,
            "input_sets": [name for name, _, _ in cases], "rtol": rtol, "atol": atol,
            **({"notes": notes} if notes else {})}
