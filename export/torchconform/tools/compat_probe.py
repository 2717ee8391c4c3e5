"""Runs inside *another* PyTorch's interpreter for ``torchconform compat``: only that interpreter's torch and the
standard library, no compiled torchconform core (it is built for one torch), and nothing newer than torch 1.13 has.
It loads, calls and saves; it judges nothing. The parent (``compat.py``) plans the jobs with the core, hands them
over, and compares the raw outputs with the goldens through the core's comparator, applying the corpus's marks
through the core for this PyTorch's version.

    python -m torchconform.tools.compat_probe run JOBS.json OUT_DIR   # one JSON line per (artifact, input set)
    python -m torchconform.tools.compat_probe compile JOBS.json       # AOTInductor packages where the parent says

The probe never reads the corpus: the parent reads every file through the core's checked reader (a regular file
inside the corpus, of its declared size and SHA-256, read once; TorchScript code checked for operators that act
outside the process) and stages those bytes in its private work directory; a job names the staged copies.

``run`` job: ``{"case", "artifact", "kind": "torchscript"|"exported_program", "file": {"file", "staged"},
"int_outputs_as_tensors", "sets": [{"name", "inputs": {"file", "staged"}, "method", "seed", "prelude": [{"method",
"args"}]}], "repeat"}``. Loaded weights-only; each line: ``{"case", "artifact", "set", "status": "ok"|"corpus_error"|
"load_error"|"call_error"|"unsupported", "message", "outputs": "<file of torch.save([output of each call])>"}``;
``corpus_error``: a file that is unsafe to load (no mark covers it).

``compile`` job: ``{"case", "variant", "file": {"file", "staged", "sha256"}, "package": "<where the parent's key puts
it>", "device": "cpu"|"cuda" (default cpu), "pytree_types"?, "forbidden_ops"?}``.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..safeload import UnsafeFile, load_data, load_exported_program
from ..writing import protocol
from ..writing.aoti_build import cached_package_problem, compile_program


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def _status(e: BaseException) -> str:
    """A file unsafe to load is the corpus's fault: ``corpus_error`` (as the runner's ErrorKind::kCorpus, never
    covered by a mark); anything else is this PyTorch failing to load."""
    unsafe = (UnsafeFile, pickle.UnpicklingError)  # the last: refused by the weights-only unpickler
    return "corpus_error" if isinstance(e, unsafe) else "load_error"


def _staged(ref: dict[str, Any]) -> bytes:
    """A corpus file as the parent staged it: the bytes the core's checked reader returned (a regular file inside the
    corpus, its declared size and SHA-256), copied into the parent's private work directory. The probe never opens
    the corpus itself."""
    return Path(ref["staged"]).read_bytes()


def run(jobs: list[dict[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    has_export = hasattr(torch, "export") and hasattr(torch.export, "load")
    rows = []
    for j, job in enumerate(jobs):
        def row(set_name: str, status: str, message: str = "", outputs: str = "", job=job) -> dict[str, Any]:
            return {"case": job["case"], "artifact": job["artifact"], "set": set_name, "status": status,
                    "message": message, "outputs": outputs}

        if job["kind"] == "exported_program" and not has_export:
            rows += [row(s["name"], "unsupported", f"torch {torch.__version__} has no torch.export: cannot load "
                                                   f"{job['file']['file']}") for s in job["sets"]]
            continue

        def load(job=job) -> Any:
            data = _staged(job["file"])
            if job["kind"] == "torchscript":
                return torch.jit.load(io.BytesIO(data)).eval()
            return load_exported_program(io.BytesIO(data), f"{job['case']}/{job['file']['file']}").module()

        try:
            loaded = load()
        except Exception as e:  # noqa: BLE001 - the load failure is the finding
            rows += [row(s["name"], _status(e), f"{job['file']['file']}: {_first_line(e)}") for s in job["sets"]]
            continue
        for k, s in enumerate(job["sets"]):
            try:
                inputs = load_data(io.BytesIO(_staged(s["inputs"])))
            except Exception as e:  # noqa: BLE001
                rows.append(row(s["name"], _status(e), f"{s['inputs']['file']}: {_first_line(e)}"))
                continue
            try:
                # A prelude changes module state: a fresh load of its own, as the runner does.
                target = load() if s["prelude"] else loaded
                protocol.apply_prelude(target, [(p["method"], p["args"]) for p in s["prelude"]])
                outputs = []
                with torch.inference_mode():
                    for _ in range(job["repeat"]):
                        args, kwargs = protocol.split_keywords(inputs, s.get("keywords", []))
                        out = protocol.call(target, s["method"], args, s["seed"], kwargs)
                        if job.get("int_outputs_as_tensors"):
                            out = protocol.ints_from_tensors(out)
                        outputs.append(out)
            except Exception as e:  # noqa: BLE001
                rows.append(row(s["name"], "call_error", _first_line(e)))
                continue
            path = out_dir / f"{j}-{k}.pt"
            torch.save(outputs, path)
            rows.append(row(s["name"], "ok", outputs=str(path)))
    return rows


def compile_jobs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AOTInductor packages at the paths the parent computed with the runner's key for this torch version."""
    inductor = getattr(torch, "_inductor", None)
    if inductor is None or not hasattr(inductor, "aoti_compile_and_package"):  # no packages before torch 2.6
        return []
    out = []
    for job in jobs:
        target = Path(job["package"])
        rec = {"case": job["case"], "variant": job["variant"], "sha256": job["file"]["sha256"],
               "program_key": job["program_key"], "package": str(target)}
        if target.exists() and not cached_package_problem(target, job["program_key"]):
            out.append({**rec, "status": "cached", "seconds": 0.0})
            continue
        t0 = time.perf_counter()
        try:
            data = _staged(job["file"])
            compile_program(io.BytesIO(data), f"{job['case']}/{job['file']['file']}", job["file"]["sha256"],
                            job.get("device", "cpu"), target, job.get("pytree_types", []),
                            job.get("forbidden_ops", []), job["program_key"], job.get("options"))
            out.append({**rec, "status": "compiled", "seconds": time.perf_counter() - t0})
        except Exception as e:  # noqa: BLE001 - the runner then reports the package as missing
            out.append({**rec, "status": "error", "message": _first_line(e), "seconds": time.perf_counter() - t0})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchconform.tools.compat_probe")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("jobs", type=Path)
    r.add_argument("out", type=Path)
    c = sub.add_parser("compile")
    c.add_argument("jobs", type=Path)
    args = parser.parse_args(argv)
    jobs = json.loads(args.jobs.read_text())
    rows = run(jobs, args.out) if args.command == "run" else compile_jobs(jobs)
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
