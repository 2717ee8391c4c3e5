"""`torchconform fuzz`: a differential search inside what each artifact accepts, eager Python against the C++
runtimes, live (docs/coverage.md).

For every artifact of the selected cases, Hypothesis draws inputs inside the artifact's guards (each dynamic
dimension of its torch.export program within its Dim range; the shapes of the example elsewhere) with the example's
dtypes and values drawn like the example's (resampled from its values; continuous ones jittered). Each input runs in
the eager model rebuilt from the cases (Python) and in the artifact loaded by the runner's own runtime in a worker
process (tools/fuzz_worker.py: TorchScript, AOTInductor, ExecuTorch, through the core); the outputs are compared by
the core under the artifact's tolerance. An input the eager model rejects is not drawn again (Hypothesis's assume);
a runtime that disagrees, raises where eager returns, crashes or hangs is a divergence. Hypothesis then shrinks it to
the smallest failing shape, which is saved as an input set of the case (writing/coverage.py's regressions): every
later export checks it.

Hypothesis was chosen over hand-written generation and shrinking (measured in docs/coverage.md): its integer
shrinking is exactly "the smallest failing size", it keeps the failing example to replay, and a seed makes a run
repeatable.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.utils._pytree as pytree

from .. import _core
from ..authoring.case import Case, CaseError, InputSet
from ..errors import UsageError
from ..text import terminal
from ..writing import coverage as cov
from ..writing.writer import eager_expected
from . import fuzz_worker

DEFAULT_EXAMPLES = 60
DEFAULT_BUDGET_S = 300.0
CALL_TIMEOUT_S = 120.0
FEW_VALUES = 16  # a leaf with at most this many distinct values is categorical (masks, ids): resampled only


class Divergence(AssertionError):
    """What the property raises for Hypothesis to shrink."""


@dataclass
class Worker:
    """The artifact's runtime in its own process (fuzz_worker), restarted after a crash or a hang."""

    opening: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    runtime: str = ""
    load_seconds: float = 0.0
    stderr_path: Path | None = None

    def start(self) -> None:
        self.close()
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen([sys.executable, "-m", "torchconform.tools.fuzz_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        reply = self._exchange(self.opening, CALL_TIMEOUT_S)
        if not reply.get("ok"):
            raise CaseError(f"loading {self.opening['case']}:{self.opening['artifact'] or '(artifact)'} failed: "
                            f"{reply.get('error')}")
        self.runtime, self.load_seconds = reply["runtime"], reply["load_seconds"]

    def _exchange(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        import threading

        box: dict[str, Any] = {}

        def talk() -> None:
            try:
                fuzz_worker.write(self.proc.stdin, message)  # type: ignore[union-attr, arg-type]
                box["reply"] = fuzz_worker.read(self.proc.stdout)  # type: ignore[union-attr, arg-type]
            except (EOFError, BrokenPipeError, OSError) as e:
                box["error"] = e

        t = threading.Thread(target=talk, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            self.close()
            return {"ok": False, "kind": "timeout", "error": f"no answer within {timeout:.0f} s (a hang)"}
        if "error" in box:
            code = self.proc.wait(timeout=30)
            self.proc = None
            why = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            return {"ok": False, "kind": "crash", "error": f"the runtime's process died ({why})"}
        return box["reply"]

    def call(self, args: tuple[Any, ...], method: str, keywords: list[str], seed: int | None) -> dict[str, Any]:
        if self.proc is None:
            self.start()
        return self._exchange({"args": args, "method": method, "keywords": keywords, "seed": seed}, CALL_TIMEOUT_S)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass
class Space:
    """What one artifact accepts, around one base set: the flat leaves of the base and their structure, and per
    dynamic symbol its range and where it sits ((leaf, dim) pairs)."""

    base: InputSet
    leaves: list[Any]
    rebuild: Callable[[list[Any]], tuple[tuple[Any, ...], dict[str, Any]]]
    symbols: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.symbols:
            return "the example's shapes (no dynamic dimension), values drawn"
        return ", ".join(f"{s} in {d['min']}..{d['hi']}" + (f" (max {d['max']} over the budget)" if d["capped"] else "")
                         for s, d in self.symbols.items())


def _space(built: Any, base: InputSet, program: Any, budget: int) -> Space:
    from ..authoring.variants import program_input_leaves, program_inputs

    if program is None:
        leaves, spec = pytree.tree_flatten((tuple(base.args), dict(base.kwargs)))
        return Space(base, leaves, lambda new: tuple(pytree.tree_unflatten(new, spec)))  # type: ignore[arg-type]
    leaves = program_input_leaves(program, tuple(base.args), base.kwargs, f"set {base.name!r}")
    in_spec = program.call_spec.in_spec
    space = Space(base, leaves, lambda new: tuple(pytree.tree_unflatten(new, in_spec)))  # type: ignore[arg-type]
    space.symbols = {sym: d for sym, d in cov.dynamic_symbols(program_inputs(program, leaves)).items()
                     if not d["derived"]}  # (a derived dimension cannot follow a resized symbol: kept as drawn)
    for sym, d in space.symbols.items():  # the most each may take with the others at their minimum
        per_unit = 0.0
        fixed = 0.0
        for i, x in enumerate(leaves):
            if not isinstance(x, torch.Tensor):
                continue
            size = x.element_size()
            for j, n in enumerate(x.shape):
                other = next((s for s, o in space.symbols.items() if (i, j) in o["where"]), None)
                size *= 1 if other == sym else (space.symbols[other]["min"] if other else n)
            if any(i == w[0] for w in d["where"]):
                per_unit += size
            else:
                fixed += size
        top = d["max"] if d["max"] is not None and d["max"] <= 1 << 30 else max(4 * leaves[d["where"][0][0]].shape[
            d["where"][0][1]], d["min"] + 16)
        fits = int((budget - fixed) / per_unit) if per_unit else top
        d["hi"] = max(d["min"], min(top, fits))
        d["capped"] = d["hi"] < top
    return space


def _values(base: Any, shape: list[int], gen: torch.Generator) -> torch.Tensor:
    """A tensor of ``shape`` with values drawn like ``base``'s: resampled from them (ids, masks and categories stay
    valid), continuous ones (more than FEW_VALUES distinct floating values) jittered by a tenth of their spread."""
    flat = base.reshape(-1)
    if flat.numel() == 0:
        return torch.zeros(shape, dtype=base.dtype)
    pick = flat[torch.randint(0, flat.numel(), shape, generator=gen)]
    if base.is_floating_point() and torch.unique(flat).numel() > FEW_VALUES:
        spread = flat.float().std().item() if flat.numel() > 1 else abs(flat.float().item())
        noise = torch.randn(shape, generator=gen) * (0.1 * spread)
        pick = (pick.float() + noise).to(base.dtype)
    return pick.clone()


def candidate(space: Space, sizes: dict[str, int], value_seed: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    gen = torch.Generator().manual_seed(value_seed)
    new = []
    for i, x in enumerate(space.leaves):
        if not isinstance(x, torch.Tensor):
            new.append(x)
            continue
        shape = list(x.shape)
        for sym, d in space.symbols.items():
            for li, dj in d["where"]:
                if li == i:
                    shape[dj] = sizes[sym]
        new.append(_values(x, shape, gen))
    args, kwargs = space.rebuild(new)
    return tuple(args), dict(kwargs)


def _shapes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return ", ".join(f"[{','.join(map(str, x.shape))}]" if isinstance(x, torch.Tensor) else repr(x)
                     for x in pytree.tree_leaves((args, kwargs)))


@dataclass
class Found:
    case: str
    artifact: str
    message: str
    shapes: str
    sizes: dict[str, int]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    value_seed: int = 0
    method: str = "forward"
    call_seed: int | None = None
    saved: Path | None = None


def fuzz_artifact(case: Case, built: Any, corpus_dir: Path, manifest: dict[str, Any], planned: dict[str, Any],
                  opening: dict[str, Any], *, examples: int, budget_s: float, seed: int, budget_bytes: int,
                  log: Callable[[str], None]) -> tuple[Found | None, int]:
    """Hypothesis's search on one artifact; the shrunk divergence, or None, and how many inputs ran."""
    from hypothesis import HealthCheck, Phase, Verbosity, assume, given, settings
    from hypothesis import seed as seeded
    from hypothesis import strategies as st

    label = planned["label"]
    who = f"{case.name}:{label}" if label else case.name
    variant = next((v for v in manifest["variants"] if v["name"] == planned["variant"]), None)
    # The guards the artifact runs under: its program's (an exported program, or the program an ExecuTorch variant
    # was lowered from); a TorchScript artifact takes what the case's first program declares the model accepts.
    if variant is not None and variant["kind"] == "exported_program":
        program_name = variant["name"]
    elif variant is not None and variant.get("lowered_from"):
        program_name = variant["lowered_from"]
    else:
        program_name = next((v["name"] for v in manifest["variants"] if v["kind"] == "exported_program"
                             and "file" in v), None)
    program = next((v.artifact for v in built.variants if v.name == program_name and v.artifact is not None), None)
    names = set(planned["sets"])
    base = next((s for s in built.input_sets if s.name in names and not s.prelude and s.generated is None), None)
    if base is None:
        log(f"[fuzz] {who}: skipped: no written input set without a prelude to start from")
        return None, 0
    space = _space(built, base, program if program is not None and base.method == "forward" else None,
                   budget_bytes)
    tolerance = (variant or {}).get("tolerance") or manifest["tolerance"]
    keywords = list(base.kwargs)
    worker = Worker(opening)
    worker.start()
    log(f"[fuzz] {who} ({worker.runtime}, loaded in {worker.load_seconds:.2f} s): {examples} inputs at most, "
        f"{budget_s:.0f} s; from set {base.name!r}: {space.describe()}")
    state: dict[str, Any] = {"ran": 0, "found": None, "t0": time.monotonic(), "shown": time.monotonic()}

    strategies = {sym: st.integers(d["min"], d["hi"]) for sym, d in space.symbols.items()}

    @settings(max_examples=examples, deadline=None, database=None, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
              phases=[Phase.generate, Phase.shrink])
    @given(sizes=st.fixed_dictionaries(strategies), value_seed=st.integers(0, 2**31 - 1))
    def agrees(sizes: dict[str, int], value_seed: int) -> None:
        now = time.monotonic()
        if state["found"] is None and now - state["t0"] > budget_s:
            assume(False)  # out of time: the rest of the search is skipped
        args, kwargs = candidate(space, sizes, value_seed)
        s = InputSet("fuzz", args, "fuzz", seed=base.seed, method=base.method, kwargs=kwargs)
        try:
            expected = eager_expected(built, s)
        except Exception:  # noqa: BLE001 - the model rejects this input: not a divergence
            assume(False)
        state["ran"] += 1
        if now - state["shown"] > 10:
            state["shown"] = now
            log(f"[fuzz] {who}: {state['ran']} inputs, {now - state['t0']:.0f} s")
        reply = worker.call((*args, *kwargs.values()), base.method, keywords, base.seed)
        problem = ""
        if not reply.get("ok"):
            problem = (f"{reply['kind']}: {reply['error']}" if reply.get("kind") else
                       f"the runtime raised where the eager model returns: {reply['error']}")
        else:
            cmp = _core.compare(expected, reply["output"], tolerance, per_set=True)
            if not cmp.ok:
                problem = f"differs from the eager model: {cmp.summary()}"
        if problem:
            state["found"] = (problem, args, kwargs, dict(sizes), value_seed)
            raise Divergence(problem)

    found = None
    try:
        seeded(seed)(agrees)()
    except Divergence:  # Hypothesis re-raises the shrunk example's, which ran last
        problem, args, kwargs, sizes, value_seed = state["found"]
        found = Found(case.name, label, problem, _shapes(args, kwargs), sizes, args, kwargs, value_seed, base.method,
                      base.seed)
    finally:
        worker.close()
    return found, state["ran"]


def _say(line: str) -> None:
    """Results go to stdout (progress, on stderr, can be silenced)."""
    print(line, flush=True)


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (label or "torchscript").lower()).strip("_") or "artifact"


def run(corpus_dir: Path, cases: list[Case], *, artifacts: list[str], examples: int, budget_s: float, seed: int,
        device: str, libraries: list[str], aoti_cache: str, allow_side_effects: bool, regressions: Path | None,
        save: bool, budget_mb: float, log: Callable[[str], None]) -> int:
    """Fuzz every artifact of ``cases`` in the corpus; returns the exit status (0 none found, 1 divergences)."""
    import importlib.util
    import json

    if importlib.util.find_spec("hypothesis") is None:
        raise CaseError("torchconform fuzz draws and shrinks its inputs with Hypothesis, which is not installed: "
                        "pip install hypothesis (or torchconform[fuzz])")
    corpus = _core.Corpus.open(str(corpus_dir))
    in_corpus = {c.name: c for c in corpus.cases}
    missing = [c.name for c in cases if c.name not in in_corpus]
    if missing:
        raise CaseError(f"{corpus_dir} has no case {', '.join(missing)}: export the cases first")
    log(f"[fuzz] seed {seed} (--seed {seed} repeats this run), {examples} inputs per artifact at most, "
        f"{budget_s:.0f} s in all")
    pairs = []
    for case in cases:
        for planned in _core.plan_artifacts(corpus, case.name):
            who = f"{case.name}:{planned['label']}" if planned["label"] else case.name
            if artifacts and not any(fnmatch.fnmatchcase(who, g) or fnmatch.fnmatchcase(planned["label"], g)
                                     for g in artifacts):
                continue
            if planned["status"] != "run":
                log(f"[fuzz] {who}: skipped: {planned['why']}")
                continue
            pairs.append((case, planned))
    if not pairs:
        raise CaseError("no artifact to fuzz (check --case / --artifact)")
    t0 = time.monotonic()
    findings: list[Found] = []
    built_cache: dict[str, Any] = {}
    total = 0
    not_fuzzed: list[str] = []  # (each named on the log when it is left)
    for n, (case, planned) in enumerate(pairs):
        who = f"{case.name}:{planned['label']}" if planned["label"] else case.name
        manifest = json.loads(in_corpus[case.name].manifest_json)
        mark = (next((v for v in manifest["variants"] if v["name"] == planned["variant"]), {}) or {}).get(
            "xfail") or manifest.get("xfail")
        if mark:
            reason = mark if isinstance(mark, str) else mark.get("reason", "")
            log(f"[fuzz] {who}: skipped: marked as an expected failure ({terminal(reason)})")
            not_fuzzed.append(who)
            continue
        if case.name not in built_cache:
            built_cache[case.name] = _rebuild(case, corpus, in_corpus[case.name], manifest)
        remaining = budget_s - (time.monotonic() - t0)
        if remaining <= 0:
            log(f"[fuzz] {who}: not fuzzed: the time budget is spent")
            not_fuzzed.append(who)
            continue
        share = remaining / (len(pairs) - n)
        opening = {"corpus": str(corpus_dir), "case": case.name, "artifact": planned["label"], "device": device,
                   "aoti_cache": aoti_cache, "allow_side_effects": allow_side_effects, "libraries": libraries}
        found, ran = fuzz_artifact(case, built_cache[case.name], corpus_dir, manifest, planned, opening,
                                   examples=examples, budget_s=share, seed=seed, budget_bytes=int(budget_mb * 1e6),
                                   log=log)
        total += ran
        if found is None and ran == 0:  # (fuzz_artifact said why)
            not_fuzzed.append(who)
            continue
        if found is None:
            _say(f"[fuzz] {who}: no divergence in {ran} inputs")
            continue
        if save and regressions is not None:
            digest = hashlib.sha256(f"{found.shapes}:{found.value_seed}".encode()).hexdigest()[:8]
            name = f"fuzz_{_slug(planned['label'])}_{digest}"
            found.saved = cov.save_regression(
                regressions, case.name, name, found.args, found.kwargs, found.method, found.call_seed,
                {"summary": f"{who} {found.message.splitlines()[0][:300]} at {found.shapes}", "artifact": who,
                 "fuzz_seed": seed, "value_seed": found.value_seed,
                 "sizes": ", ".join(f"{k}={v}" for k, v in found.sizes.items())})
        findings.append(found)
        _say(f"[fuzz] DIVERGENCE {who}: {terminal(found.message)}")
        _say(f"[fuzz]   shrunk to inputs {found.shapes}"
            + (f" ({', '.join(f'{k}={v}' for k, v in found.sizes.items())})" if found.sizes else ""))
        if found.saved:
            _say(f"[fuzz]   saved as input set {found.saved.stem!r} of case {case.name!r}: {found.saved} (every "
                "export from now on checks it)")
    left = f", {len(not_fuzzed)} not fuzzed: {', '.join(not_fuzzed)}" if not_fuzzed else ""
    _say(f"[fuzz] {len(findings)} divergence(s) in {total} inputs over {len(pairs) - len(not_fuzzed)} artifacts"
         f"{left} ({time.monotonic() - t0:.0f} s; seed {seed})")
    return 1 if findings else 0


def _rebuild(case: Case, corpus: Any, spec: Any, manifest: dict[str, Any]) -> Any:
    """The case's eager model as the export built it (same seed); refused when it does not give the corpus's goldens
    (the corpus was exported from other cases, or another torch): fuzzing would compare against another model."""
    torch.manual_seed(case.seed)
    built = case.build(case.seed)
    written = {s.name: s for s in built.input_sets}
    first = next((s["name"] for s in manifest["input_sets"] if s["name"] in written and "generated" not in s), None)
    if first is None:
        raise CaseError(f"case {case.name!r}: no written input set of the cases is in the corpus")
    _, golden = _core.load_set(corpus, case.name, first)
    cmp = _core.compare(golden, eager_expected(built, written[first]), manifest["tolerance"], per_set=True)
    if not cmp.ok:
        raise CaseError(f"case {case.name!r}: the eager model rebuilt from the cases does not give the corpus's golden "
                        f"of set {first!r} ({cmp.summary()}): was the corpus exported from these cases, with this "
                        "torch?")
    return built


def default_seed() -> int:
    return secrets.randbelow(2**31)


def budget_check(value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"must be > 0, got {value}")
    return value
