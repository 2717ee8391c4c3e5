"""Runs inside *another* PyTorch's interpreter for ``torchconform compat``: only that interpreter's torch and the
standard library, no compiled torchconform core (it is built for one torch), and nothing newer than torch 1.13 has.

    python -m torchconform.compat_probe verify CORPUS     # one JSON line per (artifact, input set)
    python -m torchconform.compat_probe compile CORPUS --cache DIR   # AOTInductor packages for the C++ runner

``verify`` loads every artifact of the corpus the Python way (``torch.jit.load``; ``torch.export.load`` and
``.module()`` for exported programs), runs each input set (method, prelude, seed as the manifest says) and compares
with the goldens under the manifest's tolerance (allclose / ulp / exact, PyTorch's default rtol/atol per dtype as
the C++ comparator uses). Each line: ``{"case", "artifact", "set", "status": pass|mismatch|load_error|call_error|
unsupported, "message", "mismatched", "total", "max_abs", "xfail"}``; the classification is done by the caller
(torchconform/compat.py).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import json
import math
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .safeload import load_data, load_exported_program
from .schema import validate


class CorpusFileError(ValueError):
    """A file the corpus does not vouch for (hash, size, path): reported as a load failure, never loaded."""


def read_verified(root: Path, rel: str, sha256: str, size: int | None = None) -> bytes:
    """The bytes of ``rel`` inside the corpus ``root``, checked as the C++ reader checks them: a regular file that
    resolves inside the corpus, of the declared size, with the declared SHA-256. Nothing unchecked is loaded: an
    unsigned edit reads as a hash mismatch here exactly as in the runner."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, rel))
    if os.path.commonpath([real_root, real]) != real_root or "\x00" in rel:
        raise CorpusFileError(f"{rel}: resolves outside the corpus directory; refused")
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CorpusFileError(f"{rel}: not a regular file; refused")
        if size is not None and st.st_size != size:
            raise CorpusFileError(f"{rel}: {st.st_size} bytes, the manifest declares {size}")
        data = f.read()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise CorpusFileError(f"{rel}: SHA-256 mismatch (manifest {sha256}, file {got})")
    return data


def read_manifests(corpus: Path) -> list[tuple[str, dict[str, Any]]]:
    """(case, manifest) of every case, each manifest hash-checked against corpus.json."""
    index = json.loads(read_verified(corpus, "corpus.json", hashlib.sha256(
        (corpus / "corpus.json").read_bytes()).hexdigest()))
    problem = validate("corpus", index)
    if problem:
        raise CorpusFileError(f"corpus.json: schema: {problem}")
    out = []
    for entry in index["cases"]:
        text = read_verified(corpus, f"{entry['name']}/manifest.json", entry["sha256"])
        manifest = json.loads(text)
        # The runner refuses a manifest that violates the schema (a 26,000-character method name, a NUL in a file
        # name): so does the probe, for the whole case, instead of reading what it can.
        problem = validate("manifest", manifest)
        out.append((entry["name"], manifest if not problem else {"schema_error": problem}))
    return out

DEFAULT_RTOL_ATOL = {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5),
                     torch.float64: (1e-7, 1e-7)}


def version_matches(version: str, spec: str) -> bool:
    """The runner's version condition ("<2.14", ">=2.13.0,<3"): numeric components, missing ones are 0."""
    def parse(v: str) -> list[int]:
        m = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", v)
        if not m:
            raise ValueError(f"not a version: {v!r}")
        return [int(x or 0) for x in m.groups()]

    ops = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
           ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
    have = parse(version)
    for clause in spec.split(","):
        clause = clause.strip()
        op = next(o for o in ("<=", ">=", "==", "!=", "<", ">") if clause.startswith(o))
        if not ops[op](have, parse(clause[len(op):])):
            return False
    return True


def mark_reason(mark: Any, version: str) -> str | None:
    """The reason of an xfail mark that applies to this torch ({"reason", "torch"?} or a plain string)."""
    if not mark:
        return None
    if isinstance(mark, str):
        return mark
    if mark.get("torch") and not version_matches(version, mark["torch"]):
        return None
    return mark.get("reason")


def _leaves(value: Any, path: str, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, (tuple, list)):
        out.append((path, ("seq", type(value).__name__, len(value))))
        for i, x in enumerate(value):
            _leaves(x, f"{path}[{i}]", out)
    elif isinstance(value, dict):
        out.append((path, ("dict", sorted(map(str, value)))))
        for k in sorted(value, key=str):
            _leaves(value[k], f"{path}[{k!r}]", out)
    else:
        out.append((path, value))


def _ordered(t: torch.Tensor) -> torch.Tensor:
    ints = t.contiguous().view(torch.int32 if t.dtype == torch.float32 else torch.int64).to(torch.int64)
    sign = ints < 0
    return torch.where(sign, -(ints & (2 ** (31 if t.dtype == torch.float32 else 63) - 1)), ints)


def compare(expected: Any, actual: Any, tolerance: dict[str, Any]) -> tuple[int, int, float, str]:
    """(mismatched elements, total elements, max abs difference, first problem) between two output trees."""
    e_leaves: list[tuple[str, Any]] = []
    a_leaves: list[tuple[str, Any]] = []
    _leaves(expected, "$", e_leaves)
    _leaves(actual, "$", a_leaves)
    if len(e_leaves) != len(a_leaves):
        return 1, 1, math.inf, f"structure differs: {len(e_leaves)} vs {len(a_leaves)} nodes"
    mismatched = total = 0
    max_abs, first = 0.0, ""
    for (path, e), (_, a) in zip(e_leaves, a_leaves):
        tol = {**tolerance.get("default", {}), **tolerance.get("outputs", {}).get(path, {})}
        if isinstance(e, torch.Tensor) and isinstance(a, torch.Tensor):
            if e.dtype != a.dtype or e.shape != a.shape:
                mismatched, total = mismatched + 1, total + 1
                first = first or f"{path}: {a.dtype} {tuple(a.shape)} where {e.dtype} {tuple(e.shape)} was expected"
                continue
            total += e.numel()
            if e.is_floating_point():
                ed, ad = e.double(), a.double()
                diff = (ad - ed).abs()
                both_nan = ed.isnan() & ad.isnan()
                diff = torch.where(both_nan, torch.zeros_like(diff), diff)
                mode = tol.get("mode", "allclose")
                if mode == "exact":
                    bad = ~((ed == ad) | both_nan)
                elif mode == "ulp" and e.dtype in (torch.float32, torch.float64):
                    bad = ((_ordered(e) - _ordered(a)).abs() > int(tol.get("max_ulp", 0))) & ~both_nan
                else:
                    rtol, atol = DEFAULT_RTOL_ATOL.get(e.dtype, (0.0, 0.0))
                    rtol, atol = tol.get("rtol", rtol), tol.get("atol", atol)
                    bad = ~((diff <= atol + rtol * ed.abs()) | both_nan | (ed == ad))
                if e.numel():
                    finite = diff[diff == diff]
                    max_abs = max(max_abs, float(finite.max()) if finite.numel() else math.inf)
            else:
                bad = e != a
                if e.numel() and bool(bad.any()):
                    max_abs = max(max_abs, float((a.double() - e.double()).abs().max()))
            n = int(bad.sum())
            if n:
                mismatched += n
                first = first or f"{path}: {n}/{e.numel()} elements mismatched"
        elif isinstance(e, tuple) and e and e[0] in ("seq", "dict"):
            if e != a:
                mismatched, total = mismatched + 1, total + 1
                first = first or f"{path}: {a} where {e} was expected"
        else:
            total += 1
            same = type(e) is type(a) and (e == a or (isinstance(e, float) and math.isnan(e) and math.isnan(a)))
            if isinstance(e, float) and isinstance(a, float) and not same:
                same = abs(a - e) <= 1e-7 + 1e-7 * abs(e)
            if not same:
                mismatched += 1
                first = first or f"{path}: {a!r} where {e!r} was expected"
                if isinstance(e, (int, float)) and isinstance(a, (int, float)):
                    max_abs = max(max_abs, abs(float(a) - float(e)))
    return mismatched, total, max_abs, first


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def _artifacts(case_dir: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    sets = [s["name"] for s in manifest["input_sets"]]
    out = []
    if manifest.get("artifact"):
        out.append({"label": "", "kind": "torchscript", "file": manifest["artifact"]["file"], "sets": sets,
                    "xfail": None, "tolerance": manifest["tolerance"], "ref": manifest["artifact"]})
    for v in manifest.get("variants", []):
        out.append({"label": v["name"], "kind": v["kind"], "file": v.get("file"), "error": v.get("error"),
                    "ref": {k: v[k] for k in ("file", "sha256", "bytes") if k in v},
                    "sets": v.get("input_sets", sets), "xfail": v.get("xfail"),
                    "tolerance": v.get("tolerance") or manifest["tolerance"],
                    "int_outputs_as_tensors": v.get("int_outputs_as_tensors", False)})
    return out


def _call(loaded: Any, s: dict[str, Any], reload) -> Any:
    target_module = reload() if s.get("prelude") else loaded
    for p in s.get("prelude", []):
        target = target_module
        *subs, method = p["method"].split(".")
        for sub in subs:
            target = getattr(target, sub)
        getattr(target, method)(*p["args"])
    return getattr(target_module, s.get("method", "forward"))


def _ints_from_tensors(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
            and value.dtype != torch.bool:
        return int(value)
    if isinstance(value, (list, tuple)):
        items = [_ints_from_tensors(x) for x in value]
        return type(value)(items)
    return value


def verify(corpus: Path, repeat: int = 2) -> list[dict[str, Any]]:
    version = torch.__version__
    has_export = hasattr(torch, "export") and hasattr(torch.export, "load")
    rows = []
    for case_name, manifest in read_manifests(corpus):
        entry = {"name": case_name}
        case_dir = corpus / case_name
        if "schema_error" in manifest:
            rows.append({"case": case_name, "artifact": "", "set": "*", "status": "load_error",
                         "message": f"{case_name}/manifest.json: schema: {manifest['schema_error']}", "mismatched": 0,
                         "total": 0, "max_abs": 0.0, "xfail": None})
            continue
        sets = {s["name"]: s for s in manifest["input_sets"]}
        case_mark = manifest.get("xfail")
        for art in _artifacts(case_dir, manifest):
            def row(set_name: str, status: str, message: str = "", mismatched: int = 0, total: int = 0,
                    max_abs: float = 0.0, art=art, sets=sets, case_mark=case_mark, entry=entry) -> dict[str, Any]:
                s = sets.get(set_name, {})
                mark = art["xfail"] or s.get("xfail") or case_mark
                return {"case": entry["name"], "artifact": art["label"], "set": set_name, "status": status,
                        "message": message, "mismatched": mismatched, "total": total,
                        "max_abs": max_abs if math.isfinite(max_abs) else None,
                        "xfail": mark_reason(mark, version)}

            if not art["file"]:
                rows.append(row("*", "load_error", f"{art['label']}: capture failed at export: {art.get('error')}"))
                continue
            path = case_dir / art["file"]
            ref = art["ref"]
            if art["kind"] == "exported_program" and not has_export:
                rows.append(row("*", "unsupported", f"torch {version} has no torch.export: cannot load {art['file']}"))
                continue

            def load(path=path, art=art, ref=ref, case_name=case_name):
                # The hash-checked bytes are what is loaded, never the path again.
                data = read_verified(corpus, f"{case_name}/{ref['file']}", ref["sha256"], ref.get("bytes"))
                if art["kind"] == "torchscript":
                    return torch.jit.load(io.BytesIO(data)).eval()
                return load_exported_program(io.BytesIO(data), str(path)).module()

            try:
                loaded = load()
            except Exception as e:  # noqa: BLE001 - the load failure is the finding
                for name in art["sets"]:
                    rows.append(row(name, "load_error", f"{art['file']}: {_first_line(e)}"))
                continue
            for name in art["sets"]:
                s = sets[name]
                try:
                    inputs, expected = (load_data(io.BytesIO(read_verified(
                        corpus, f"{case_name}/{s[role]['file']}", s[role]["sha256"], s[role].get("bytes"))))
                        for role in ("inputs", "expected"))
                except Exception as e:  # noqa: BLE001
                    rows.append(row(name, "load_error", f"{s['inputs']['file']}: {_first_line(e)}"))
                    continue
                try:
                    fn = _call(loaded, s, load) if art["kind"] == "torchscript" else loaded
                    worst = None
                    with torch.inference_mode():
                        for _ in range(repeat):
                            if s.get("seed") is not None:
                                torch.manual_seed(s["seed"])
                            out = fn(*inputs)
                            if art.get("int_outputs_as_tensors"):
                                out = _ints_from_tensors(out)
                            got = compare(expected, out, art["tolerance"])
                            if worst is None or got[0] > worst[0]:
                                worst = got
                except Exception as e:  # noqa: BLE001
                    rows.append(row(name, "call_error", _first_line(e)))
                    continue
                mismatched, total, max_abs, first = worst
                rows.append(row(name, "mismatch" if mismatched else "pass", first, mismatched, total, max_abs))
    return rows


def package_path(cache: Path, program_sha256: str, torch_version: str, device_type: str = "cpu") -> Path:
    """The C++ runner's aoti_package_path (runner.cpp), for interpreters without the compiled core."""
    return cache / f"{program_sha256[:32]}-torch{torch_version}-{device_type}" / "model.pt2"


def compile_packages(corpus: Path, cache: Path) -> list[dict[str, Any]]:
    """AOTInductor packages at the key the C++ runner looks up: <cache>/<sha256[:32]>-torch<version>-cpu/model.pt2
    (torchconform/aoti.py without the compiled core). Cached: an existing package is kept."""
    import shutil

    version = torch.__version__.split("+")[0]
    try:
        inductor = importlib.import_module("torch._inductor")
    except ImportError:
        return []
    if not hasattr(inductor, "aoti_compile_and_package"):  # no AOTInductor packages before torch 2.6
        return []
    out = []
    for name, manifest in read_manifests(corpus):
        entry = {"name": name}
        if "schema_error" in manifest:
            continue  # the verify step reports it
        for v in manifest.get("variants", []):
            if v["kind"] != "exported_program" or not v.get("file") or "aoti" not in v.get("runtimes", []):
                continue
            target = package_path(cache, v["sha256"], version)
            rec = {"case": entry["name"], "variant": v["name"], "package": str(target)}
            if target.exists():
                out.append({**rec, "status": "cached", "seconds": 0.0})
                continue
            try:
                data = read_verified(corpus, f"{name}/{v['file']}", v["sha256"], v.get("bytes"))
            except (OSError, CorpusFileError) as e:
                out.append({**rec, "status": "error", "message": str(e), "seconds": 0.0})
                continue
            t0 = time.perf_counter()
            tmp = target.parent.with_name(target.parent.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                with torch.no_grad():
                    program = load_exported_program(io.BytesIO(data), f"{name}/{v['file']}")
                    inductor.aoti_compile_and_package(program, package_path=str(tmp / "model.pt2"))
                shutil.rmtree(target.parent, ignore_errors=True)
                tmp.rename(target.parent)
                out.append({**rec, "status": "compiled", "seconds": time.perf_counter() - t0})
            except Exception as e:  # noqa: BLE001 - the runner then reports the package as missing
                out.append({**rec, "status": "error", "message": _first_line(e), "seconds": time.perf_counter() - t0})
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchconform.compat_probe")
    sub = parser.add_subparsers(dest="command", required=True)
    ver = sub.add_parser("verify")
    ver.add_argument("corpus", type=Path)
    ver.add_argument("--repeat", type=int, default=2)
    com = sub.add_parser("compile")
    com.add_argument("corpus", type=Path)
    com.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "verify":
        rows = verify(args.corpus, args.repeat)
    else:
        rows = compile_packages(args.corpus, args.cache)
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
