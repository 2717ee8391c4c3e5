"""The noise envelope of a corpus's goldens (``torchconform export --envelope``).

A golden is computed once, single-threaded, with the kernels ATen dispatches to on the exporting CPU. Verified on
another CPU (another ``ATEN_CPU_CAPABILITY``: AVX-512 instead of AVX2, or no vector ISA at all) or with other thread
counts, a correct deployment moves within some distance of it; beyond that distance something else is going on. This
module measures that distance per output: every case's artifact is run by the core (the C++ runner's own calls, seeds
and preludes) in fresh processes that change only the kernel dispatch -- each lower capability level this CPU
supports, oneDNN's and MKL's own ISA capped at SSE4, and the exporter's thread count replaced by the machine's
cores -- and the largest difference from the
golden per output path (max_abs, max_ulp) is stored in the input set's ``envelope`` with the list of what was changed.
The runner then reports each result relative to it (JSON ``envelope``, and ``[noise envelope: 0.3x]`` on the line).

What runs is the case's TorchScript artifact (a case with only exported programs gets no envelope: their
AOTInductor packages do not exist yet at export time). The envelope therefore describes how the deployed computation
moves with dispatch; it is measured against the eager goldens, so it also holds the artifact's own difference from
eager at the exporting setting (zero for most cases).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import CorpusInputError, SetupError
from .digest import sha256_file

# Capability levels in the order ATen ranks them on each architecture; only the ones below the machine's own are
# worth a run (the machine's own level is the golden's).
_LEVELS = {"x86": ["default", "avx2", "avx512"], "arm": ["default", "sve256"]}


def lower_levels(current: str) -> list[str]:
    current = current.lower()
    for levels in _LEVELS.values():
        if current in levels:
            return levels[: levels.index(current)]
    return ["default"] if current != "default" else []


def sources(exported_threads: int) -> list[tuple[str, dict[str, str], int]]:
    """(label, environment changes, threads) of each run."""
    out = [(f"ATEN_CPU_CAPABILITY={lvl}", {"ATEN_CPU_CAPABILITY": lvl}, exported_threads)
           for lvl in lower_levels(torch.backends.cpu.get_cpu_capability())]
    if torch.backends.cpu.get_cpu_capability().lower() in ("avx2", "avx512"):
        # the libraries under ATen pick their own kernels: oneDNN (convolutions, some matmuls) and MKL (BLAS), each
        # capped at SSE4 here
        out.append(("ONEDNN_MAX_CPU_ISA=SSE41", {"ONEDNN_MAX_CPU_ISA": "SSE41"}, exported_threads))
        out.append(("MKL_ENABLE_INSTRUCTIONS=SSE4_2", {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, exported_threads))
    cores = max(2, os.cpu_count() or 1)
    if cores != exported_threads:
        out.append((f"threads={cores}", {}, cores))
    return out


def _worker(corpus: str, out: str, threads: int) -> None:
    from .. import _core

    opened = _core.Corpus.open(corpus)
    values: dict[str, Any] = {}
    for c in opened.cases:
        if c.error:
            continue
        for r in _core.run_case(opened, c.name, device="cpu", threads=threads, repeat=1):
            if r.artifact == "" and r.verdict in ("PASS", "FAIL", "XFAIL", "XPASS") and not r.error:
                values[f"{c.name}/{r.input_set}"] = r.output
    torch.save(values, out)


def _run(corpus: Path, env: dict[str, str], threads: int, out: Path) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")}
    environ.update(env)
    code = ("import sys; from torchconform.writing.envelope import _worker; "
            "_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))")
    r = subprocess.run([sys.executable, "-c", code, str(corpus), str(out), str(threads)], env=environ,
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SetupError(f"envelope run ({env or 'threads ' + str(threads)}) failed with exit {r.returncode}: "
                         f"{(r.stderr.strip().splitlines() or [''])[-1]}")
    return torch.load(out, weights_only=True)


def measure(corpus: Path, exported_threads: int, log: Callable[[str], None]) -> None:
    """Adds ``envelope`` to every input set of the (staged, complete) corpus and re-signs what changed."""
    from .. import _core
    from ..schema import validate

    runs = sources(exported_threads)
    if not runs:
        log("envelope: this CPU offers no other capability level and one core: nothing to vary")
        return
    outputs: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="torchconform-envelope-") as tmp:
        for i, (label, env, threads) in enumerate(runs):
            log(f"envelope: run {i + 1}/{len(runs)}: {label}")
            outputs.append((label, _run(corpus, env, threads, Path(tmp) / f"{i}.pt")))
    opened = _core.Corpus.open(str(corpus))
    checked = {c.name: c.manifest_json for c in opened.cases}
    index_path = corpus / "corpus.json"
    index = json.loads(index_path.read_text())  # (the writer's own staged index, re-signed below)
    for entry in index["cases"]:
        mpath = corpus / entry["manifest"]
        if not checked.get(entry["name"]):
            raise CorpusInputError(f"{entry['name']}: the staged manifest does not open: nothing to add an envelope to")
        manifest = json.loads(checked[entry["name"]])  # as the core read and checked it
        for s in manifest["input_sets"]:
            key = f"{manifest['case']}/{s['name']}"
            golden = _core.load_set(opened, manifest["case"], s["name"])[1]
            bounds: dict[str, dict[str, float]] = {}
            used = []
            for label, values in outputs:
                if key not in values:
                    continue
                used.append(label)
                cmp = _core.compare(golden, values[key], manifest["tolerance"])
                for leaf in cmp.leaves:
                    if not leaf.dtype or not (leaf.dtype.startswith("float") or leaf.dtype.startswith("bfloat")
                                              or leaf.dtype.startswith("complex")):
                        continue
                    if not (math.isfinite(leaf.max_abs) and math.isfinite(leaf.max_ulp)):
                        log(f"  warning: envelope {key} {leaf.path} under {label}: not finite, left out")
                        continue
                    b = bounds.setdefault(leaf.path, {"max_abs": 0.0, "max_ulp": 0.0})
                    b["max_abs"] = max(b["max_abs"], float(leaf.max_abs))
                    b["max_ulp"] = max(b["max_ulp"], float(leaf.max_ulp))
            if used and bounds:
                s["envelope"] = {"sources": used, "outputs": bounds}
        problem = validate("manifest", manifest)
        if problem:
            raise CorpusInputError(f"{manifest['case']}: the manifest with its envelope fails the schema: {problem}")
        mpath.write_text(json.dumps(manifest, indent=2) + "\n")
        entry["sha256"] = sha256_file(mpath)
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    log(f"envelope: measured over {', '.join(r[0] for r in runs)}")
