"""AOTInductor packages for a corpus's exported programs: compiled once, cached, never committed.

A package is native code built for one machine, one LibTorch and one device type, so the corpus keeps the portable
``.pt2`` ExportedProgram and each machine compiles it (``torchconform compile``). The cache key is what the package
depends on (``_core.program_key``: the program's graph without its stack traces, its weights and constants, its
AOTInductor options), the torch version and the device type: a changed graph, weight or option, an upgraded torch or
another device gets a new package; an edit that only moves the model's source lines does not, and a warm cache skips
the compile (minutes on a small machine). The C++ runner looks packages up with the same key
(``_core.aoti_package_path``) and reports a missing one as an error naming this command.

The cache holds shared libraries the runner loads and executes: it is this user's alone (created 0700, refused when
another user could write into it, never in a shared temporary directory), and the runner loads a package only after
checking it against the digest its key.json recorded here at compile.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .. import _core
from ..errors import CorpusInputError, SetupError
from ..text import terminal
from .aoti_build import cached_package_problem, compile_program


def default_cache() -> Path:
    return Path(_core.default_aoti_cache())


def private_cache(cache: Path | str | None) -> Path:
    """The package cache, created with mode 0700 where missing and refused when another local user could write into
    it (its packages are native code the runner loads): the core's rule, ``_core.prepare_aoti_cache``."""
    return Path(_core.prepare_aoti_cache(str(cache) if cache else str(default_cache())))


def package_path(cache: Path, program_key: str, device_type: str) -> Path:
    return Path(_core.aoti_package_path(str(cache), program_key, device_type))


def _programs(opened: Any, cases: list[str]) -> list[tuple[Any, Any]]:
    """(case, variant) of every exported program of the opened corpus."""
    names = set(opened.select(cases))
    out = []
    for c in opened.cases:
        if c.name not in names:
            continue
        if c.error:
            raise CorpusInputError(f"{c.name}: {c.error}")
        for v in c.variants:
            if v.kind == "exported_program" and v.file and "aoti" in v.runtimes:
                out.append((c, v))
    return out


def _exported_with(libraries: list[str]) -> str:
    """The libraries the corpus says were loaded at export: a hint (never loaded from here), escaped."""
    return f" (loaded when the case was exported: {terminal(', '.join(libraries))})" if libraries else ""


def _prepare_worker(libraries: list[str], imports: list[str]) -> None:
    import importlib

    for path in libraries:
        torch.ops.load_library(path)
    for module in imports:
        importlib.import_module(module)


def _timed_compile(*args: Any) -> float:
    t0 = time.perf_counter()
    compile_program(*args)
    return time.perf_counter() - t0


def compile_corpus(corpus: Path, *, devices: list[str], cache: Path | None = None, cases: list[str] | None = None,
                   force: bool = False, workers: int = 1, libraries: list[str] | tuple[str, ...] = (),
                   imports: list[str] | tuple[str, ...] = (), allow_side_effects: bool = False,
                   log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[dict[str, Any]]:
    """Compile every exported program of ``corpus`` for each device type; return one record per package:
    ``{"case", "variant", "device", "package", "status": "cached"|"compiled", "seconds"}``. A compile that fails
    raises (the runner would report the missing package anyway; failing here names the cause). ``workers``: compiles
    run that many at a time, each in a fresh interpreter that first loads ``libraries`` and imports ``imports`` (what
    this process was given with --load-library / --import); every package still lands atomically in the cache. A
    program that calls an operator acting outside the process (``_core.side_effect_operators``) is refused unless
    ``allow_side_effects``: its package would run it wherever the corpus is verified."""
    cache = private_cache(cache)
    if torch.__version__.split("+")[0] != _core.libtorch_version():
        raise SetupError(f"torch {torch.__version__} in Python but the runner is built against LibTorch "
                         f"{_core.libtorch_version()}: packages must be compiled by the torch the runner runs")
    opened = _core.Corpus.open(str(corpus))
    programs = _programs(opened, cases or [])
    registered = {name.split("::")[0] for name in torch._C._dispatch_get_all_op_names()}
    for c, _ in programs:
        missing = [ns for ns in c.operator_namespaces if ns not in registered]
        if missing:
            names = ", ".join(repr(terminal(n)) for n in missing)
            raise SetupError(f"{c.name}: its programs call operators of namespace {names}, which nothing in this "
                             "process registers: load the library with --load-library PATH or import the module that "
                             "registers them with --import MODULE" + _exported_with(c.operator_libraries))
    forbidden = [] if allow_side_effects else list(_core.side_effect_operators())
    jobs = [(c, v, d) for c, v in programs for d in devices]
    todo: list[tuple[int, str, dict[str, Any], tuple[Any, ...]]] = []
    records_at: dict[int, dict[str, Any]] = {}
    queued: dict[Path, int] = {}  # one compile per package: two cases may hold byte-identical programs
    for i, (c, v, device) in enumerate(jobs, 1):
        key = _core.program_key(opened, c.name, v.name)
        target = package_path(cache, key, device)
        label = f"[{i}/{len(jobs)}] {c.name}:{v.name} for {device}"
        rec = {"case": c.name, "variant": v.name, "device": device, "package": str(target)}
        if target in queued:
            records_at[i] = {**rec, "status": "cached", "seconds": 0.0}
            log(f"{label}: the same program as [{queued[target]}/{len(jobs)}] (one package)")
            continue
        if target.exists() and not force:
            problem = cached_package_problem(target, key)
            if not problem:
                records_at[i] = {**rec, "status": "cached", "seconds": 0.0}
                log(f"{label}: cached ({target.parent.name})")
                continue
            log(f"{label}: the cached package is unusable ({problem}); compiling it again")
        queued[target] = i
        # The program's bytes through the core's checked reader (a regular file inside the corpus, its declared size
        # and SHA-256, read once): what compiles is what was hashed.
        program = io.BytesIO(_core.read_case_file(opened, c.name, v.file))
        todo.append((i, label, rec, (program, f"{c.name}/{v.file}", v.sha256, device, target, v.pytree_types,
                                     forbidden, key, v.aoti_options)))
    if workers > 1 and len(todo) > 1:
        # Each compile is mostly single-threaded Python: N of them in N fresh interpreters (spawned, not forked:
        # nothing of this process's torch state is shared), each loading the same operator libraries first.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        log(f"compiling {len(todo)} packages, {min(workers, len(todo))} at a time")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_prepare_worker, initargs=(list(libraries), list(imports))) as pool:
            started = {pool.submit(_timed_compile, *args): (i, label, rec) for i, label, rec, args in todo}
            for future in as_completed(started):
                i, label, rec = started[future]
                seconds = future.result()  # a failed compile raises here, naming its program
                records_at[i] = {**rec, "status": "compiled", "seconds": seconds}
                log(f"{label}: compiled in {seconds:.1f} s -> {rec['package']}")
    else:
        for i, label, rec, args in todo:
            log(f"{label}: compiling with AOTInductor (takes a while; cached afterwards)...")
            seconds = _timed_compile(*args)
            records_at[i] = {**rec, "status": "compiled", "seconds": seconds}
            log(f"{label}: compiled in {seconds:.1f} s -> {rec['package']}")
    records = [records_at[i] for i in sorted(records_at)]
    if not jobs:
        log("no exported programs to compile")
    return records
