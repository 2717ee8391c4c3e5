"""AOTInductor packages for a corpus's exported programs: compiled once, cached, never committed.

A package is native code built for one machine, one LibTorch and one device type, so the corpus keeps the portable
``.pt2`` ExportedProgram and each machine compiles it (``torchconform compile``). The cache key is the program's
SHA-256, the torch version and the device type: a changed program, an upgraded torch or another device gets a new
package, and a warm cache skips the compile (minutes on a small machine). The C++ runner looks packages up with the
same key (``_core.aoti_package_path``) and reports a missing one as an error naming this command.

The cache holds shared libraries the runner loads and executes: it is as trusted as the build directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from . import _core
from .safeload import UnsafeFile, load_exported_program


def default_cache() -> Path:
    return Path(_core.default_aoti_cache())


def package_path(cache: Path, program_sha256: str, device_type: str) -> Path:
    return Path(_core.aoti_package_path(str(cache), program_sha256, device_type))


def _programs(corpus: Path, cases: list[str]) -> list[tuple[str, Any]]:
    """(case name, variant) of every exported program in the corpus, hash-checked by the C++ reader."""
    opened = _core.Corpus.open(str(corpus))
    names = set(opened.select(cases))
    out = []
    for c in opened.cases:
        if c.name not in names:
            continue
        if c.error:
            raise ValueError(f"{c.name}: {c.error}")
        for v in c.variants:
            if v.kind == "exported_program" and v.file and "aoti" in v.runtimes:
                out.append((c, v))
    return out


def compile_corpus(corpus: Path, *, devices: list[str], cache: Path | None = None, cases: list[str] | None = None,
                   force: bool = False, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)
                   ) -> list[dict[str, Any]]:
    """Compile every exported program of ``corpus`` for each device type; return one record per package:
    ``{"case", "variant", "device", "package", "status": "cached"|"compiled", "seconds"}``. A compile that fails
    raises (the runner would report the missing package anyway; failing here names the cause)."""
    cache = Path(cache) if cache else default_cache()
    if torch.__version__.split("+")[0] != _core.libtorch_version():
        raise ValueError(f"torch {torch.__version__} in Python but the runner is built against LibTorch "
                         f"{_core.libtorch_version()}: packages must be compiled by the torch the runner runs")
    records = []
    programs = _programs(Path(corpus), cases or [])
    jobs = [(c, v, d) for c, v in programs for d in devices]
    for i, (c, v, device) in enumerate(jobs, 1):
        target = package_path(cache, v.sha256, device)
        label = f"[{i}/{len(jobs)}] {c.name}:{v.name} for {device}"
        rec = {"case": c.name, "variant": v.name, "device": device, "package": str(target)}
        if target.exists() and not force:
            problem = cached_package_problem(target, v.sha256)
            if not problem:
                records.append({**rec, "status": "cached", "seconds": 0.0})
                log(f"{label}: cached ({target.parent.name})")
                continue
            log(f"{label}: the cached package is unusable ({problem}); compiling it again")
        log(f"{label}: compiling with AOTInductor (takes a while; cached afterwards)...")
        t0 = time.perf_counter()
        _compile_one(Path(c.dir) / v.file, v.sha256, device, target)
        seconds = time.perf_counter() - t0
        records.append({**rec, "status": "compiled", "seconds": seconds})
        log(f"{label}: compiled in {seconds:.1f} s -> {target}")
    if not jobs:
        log("no exported programs to compile")
    return records


def cached_package_problem(package: Path, program_sha256: str) -> str:
    """Why a cached package cannot be trusted to be the complete output of a compile of this program ("" when it
    can): its key.json must name the program and the package's own size and SHA-256 (a truncated or replaced
    package used to be reported as cached, and the runner then failed on it)."""
    try:
        key = json.loads((package.parent / "key.json").read_text())
    except (OSError, ValueError) as e:
        return f"no readable key.json: {e}"
    if not isinstance(key, dict) or key.get("program_sha256") != program_sha256:
        return "key.json names another program"
    if "package_sha256" not in key:
        return "key.json has no package digest (written by an older torchconform)"
    try:
        if package.stat().st_size != key.get("package_bytes"):
            return f"{package.stat().st_size} bytes, key.json says {key.get('package_bytes')}"
        if hashlib.sha256(package.read_bytes()).hexdigest() != key["package_sha256"]:
            return "its SHA-256 differs from key.json's"
    except OSError as e:
        return str(e)
    return ""


def _compile_one(program_file: Path, sha256: str, device: str, target: Path) -> None:
    data = program_file.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:  # the corpus was opened (and hashed) a moment ago: re-check
        raise ValueError(f"{program_file}: SHA-256 changed while compiling")
    try:
        # Never a plain torch.export.load: it unpickles some records with weights_only=False (safeload.py).
        program = load_exported_program(program_file)
    except UnsafeFile:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged or too-new program: say which and why, no traceback
        raise ValueError(f"{program_file}: torch.export.load failed: {type(e).__name__}: {e}") from e
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available to this torch")
        program = torch.export.passes.move_to_device_pass(program, "cuda")
    # Built next to the final place and renamed into it: a killed compile leaves no half package behind.
    tmp = target.parent.with_name(target.parent.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        try:
            with torch.no_grad():
                torch._inductor.aoti_compile_and_package(program, package_path=str(tmp / target.name))
        except Exception as e:  # noqa: BLE001 - name the program; the compiler's own log went to stderr
            raise ValueError(f"{program_file}: AOTInductor compile for {device} failed: {type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
        package = tmp / target.name
        (tmp / "key.json").write_text(json.dumps({
            "program_sha256": sha256, "torch": torch.__version__, "device": device,
            "package_sha256": hashlib.sha256(package.read_bytes()).hexdigest(), "package_bytes": package.stat().st_size,
            "program": str(program_file), "compiled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2) + "\n")
        shutil.rmtree(target.parent, ignore_errors=True)
        tmp.rename(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
