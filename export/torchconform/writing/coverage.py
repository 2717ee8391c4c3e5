"""Input sets the export generates so that a PASS covers what the artifact says it accepts, not only the written sets.

A torch.export program declares the shapes it accepts (``Dim("batch", min=1, max=64)``): AOTInductor and ExecuTorch
run any call inside those guards, and a runtime can be wrong only past the sizes the case's authors wrote down (an
ExecuTorch program planned for the example's memory fails at batch 16; a kernel takes another path past a size).
For every dynamic dimension of every captured program the export adds a set at its minimum, its maximum and one value
inside that is not a power of two, each made from the program's example set resized along that dimension (every
input that shares the dimension's symbol together), with the golden from the eager model like any other set. A traced
artifact whose trace example has a batch larger than 1 is also checked at batch 1 (a trace can bake its example's
batch into a view or an expand).

Resizing keeps the values valid: a smaller size is a slice of the example, a larger one repeats it (indices and
token ids stay what the model was given; floating copies get a small seeded jitter so that the repeats are not
identical). A set whose inputs would exceed the memory budget, a maximum the program leaves unbounded and a symbol
that other dimensions derive from are left out and recorded; a set the eager model itself fails on is a finding of the
export (the program's guards admit a shape the model does not support), recorded, never a corpus error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.utils._pytree as pytree

from ..authoring.case import Built, Case, InputSet
from ..errors import UsageError

DEFAULT_SENSITIVITY = 0.01  # the core's kDefaultSensitivity: 1% of relative error must be detectable
DEFAULT_BUDGET_MB = 16.0
JITTER = 0.05  # relative, on the repeated copies of floating inputs


@dataclass(frozen=True)
class Coverage:
    """What the export adds to the written sets. ``bounds``: the generated sets (module docstring); ``budget_mb``: the
    most one generated set's inputs may take (its golden counts too once computed); ``sensitivity``: the relative error
    a golden's tolerance must be able to detect on most elements before export warns (the core's rule, LeafReport.weak).
    """

    bounds: bool = True
    budget_mb: float = DEFAULT_BUDGET_MB
    sensitivity: float = DEFAULT_SENSITIVITY
    # Where `torchconform fuzz` saved the divergences it found (<dir>/<case>/<set>.pt): each becomes an input set of
    # its case at every export (regressions_dirs gives the default places).
    regressions: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.budget_mb > 0:
            raise UsageError(f"the generated sets' memory budget must be > 0 MB, got {self.budget_mb}")
        if not self.sensitivity > 0:
            raise UsageError(f"the sensitivity must be > 0, got {self.sensitivity}")


@dataclass
class Generated:
    """The generated sets of a case, and what was left out or found (the manifest's ``coverage``)."""

    sets: list[InputSet] = field(default_factory=list)
    left_out: list[dict[str, Any]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    # set name -> the programs (variant names) whose guards admit it
    programs: dict[str, list[str]] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"generated": [s.name for s in self.sets], "left_out": self.left_out, "findings": self.findings}


REGRESSIONS_SUFFIX = ".regressions"


def regressions_dirs(specs: list[str] | None) -> list[Path]:
    """Where the regressions of the cases ``specs`` name live (torchconform export and fuzz agree on it): beside a
    cases file, ``my_cases.py`` -> ``my_cases.regressions/``; beside a module's file; for the built-in cases, in the
    package (``authoring/builtin/regressions``)."""
    if not specs:
        return [Path(__file__).resolve().parents[1] / "authoring" / "builtin" / "regressions"]
    out = []
    for spec in specs:
        if spec.endswith(".py") or "/" in spec:
            path = Path(spec)
        else:
            import importlib.util

            found = importlib.util.find_spec(spec)
            if found is None or not found.origin:
                continue
            path = Path(found.origin)
        out.append(path.resolve().with_suffix(REGRESSIONS_SUFFIX))
    return out


def regression_file(directory: Path, case: str, name: str) -> Path:
    return directory / case / f"{name}.pt"


def save_regression(directory: Path, case: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                    method: str, seed: int | None, found: dict[str, Any]) -> Path:
    """One input set found by fuzzing, as every later export of the case reads it (load_regressions)."""
    path = regression_file(directory, case, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save({"args": tuple(args), "kwargs": dict(kwargs), "method": method, "seed": seed, "found": found}, tmp)
    tmp.replace(path)
    return path


def load_regressions(case: Case, directories: tuple[Path, ...]) -> list[InputSet]:
    """The saved regressions of ``case``, in name order. Read with ``weights_only=True``: a file in someone's checkout
    cannot run code at export."""
    from ..authoring.case import NAME_RE, CaseError

    sets = []
    for d in directories:
        for path in sorted((d / case.name).glob("*.pt")):
            name = path.stem
            try:
                data = torch.load(path, weights_only=True)
                args, kwargs = tuple(data["args"]), dict(data["kwargs"])
                method, seed, found = str(data["method"]), data["seed"], dict(data["found"])
            except Exception as e:  # noqa: BLE001 - name the file
                raise CaseError(f"case {case.name!r}: regression {path}: cannot be read: {type(e).__name__}: {e}"
                                ) from e
            if not NAME_RE.match(name):
                raise CaseError(f"case {case.name!r}: regression {path}: the name must match {NAME_RE.pattern}")
            sets.append(InputSet(name, args, f"generated: found by torchconform fuzz: {found.get('summary', '')}",
                                 seed=seed if isinstance(seed, int) else None, method=method, kwargs=kwargs,
                                 generated={"by": "fuzz", **{k: v for k, v in found.items()
                                                             if isinstance(v, (str, int, float, bool))}}))
    return sets


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def inside_value(lo: int, hi: int, avoid: set[int]) -> int | None:
    """A size strictly between ``lo`` and ``hi`` near their geometric mean (a typical size, and a cheap set), not a
    power of two (kernels often take their fast path on those) and not one of ``avoid`` (sizes already checked); None
    when there is none."""
    start = max(lo + 1, round(math.sqrt(max(lo, 1) * hi)))
    for step in range(hi - lo):  # outward from start: start, start - 1, start + 1, ...
        for v in (start - step, start + step) if step else (start,):
            if lo < v < hi and not _is_power_of_two(v) and v not in avoid:
                return v
        if start - step <= lo and start + step >= hi:
            break
    return None


def resize(t: torch.Tensor, dim: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """``t`` resized to ``n`` along ``dim``: a slice when smaller, the example repeated when larger (floating repeats
    jittered by a seeded relative ``JITTER``)."""
    size = t.shape[dim]
    if n <= size:
        return t.narrow(dim, 0, n).clone()
    out = t.index_select(dim, torch.arange(n) % size)
    if t.is_floating_point():
        shape = [1] * t.dim()
        shape[dim] = n
        repeated = (torch.arange(n) >= size).reshape(shape)
        noise = torch.randn(out.shape, generator=gen, dtype=torch.float32).to(out.dtype)
        out = torch.where(repeated, out * (1 + JITTER * noise), out)
    return out


def _bytes(values: Any) -> int:
    return sum(x.numel() * x.element_size() for x in pytree.tree_leaves(values) if isinstance(x, torch.Tensor))


def dynamic_symbols(inputs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The dynamic symbols of a program's recorded guards (the manifest's ``inputs``): per symbol its ``min``, ``max``
    (None: unbounded), ``where`` it sits ((leaf, dim) pairs: one symbol on several dimensions keeps them equal) and
    whether other dimensions are ``derived`` from it (an expression naming it: it cannot be resized alone)."""
    derived = " ".join(str(d["expr"]) for e in inputs for d in e.get("shape", []) if isinstance(d, dict)
                       and "expr" in d)
    symbols: dict[str, dict[str, Any]] = {}
    for i, e in enumerate(inputs):
        for j, d in enumerate(e.get("shape", [])):
            if isinstance(d, dict) and "symbol" in d:
                symbols.setdefault(d["symbol"], {**d, "where": [], "derived": bool(
                    re.search(rf"\b{re.escape(d['symbol'])}\b", derived))})["where"].append((i, j))
    return symbols


def _within(leaves: list[Any], inputs: list[dict[str, Any]]) -> bool:
    """Whether flat leaves satisfy a program's recorded guards (static sizes equal, symbols in range and consistent)."""
    seen: dict[str, int] = {}
    for leaf, entry in zip(leaves, inputs):
        if entry["kind"] != "tensor":
            continue
        if not isinstance(leaf, torch.Tensor) or leaf.dim() != len(entry.get("shape", [])):
            return False
        for size, d in zip(leaf.shape, entry["shape"]):
            if isinstance(d, int):
                if size != d:
                    return False
            elif "symbol" in d:
                if size < d["min"] or (d["max"] is not None and size > d["max"]) or seen.setdefault(
                        d["symbol"], size) != size:
                    return False
    return True


def generate(case: Case, built: Built, options: Coverage) -> Generated:
    """The case's generated sets (not yet in ``built``: the caller adds them and computes their goldens)."""
    from ..authoring.variants import program_input_leaves, program_inputs

    out = Generated()
    for r in load_regressions(case, options.regressions):
        if r.name in {s.name for s in built.input_sets}:
            from ..authoring.case import CaseError

            raise CaseError(f"case {case.name!r}: regression {r.name!r} has the name of a written input set")
        out.sets.append(r)
    if not options.bounds:
        _admitted(out, built)
        return out
    gen = torch.Generator().manual_seed(case.seed + 7)
    budget = int(options.budget_mb * 1e6)
    taken = {s.name for s in [*built.input_sets, *out.sets]}
    shapes_seen: set[tuple[Any, ...]] = set()

    def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(tuple(x.shape) if isinstance(x, torch.Tensor) else repr(x) for x in pytree.tree_leaves(
            (args, kwargs)))

    for s in [*built.input_sets, *out.sets]:
        shapes_seen.add(key_of(tuple(s.args), s.kwargs))

    def add(name: str, base: InputSet, args: tuple[Any, ...], kwargs: dict[str, Any], detail: str,
            generated: dict[str, Any]) -> None:
        key = key_of(args, kwargs)
        if key in shapes_seen:
            return  # a written or generated set already has exactly these shapes
        size = _bytes((args, kwargs))
        if size > budget:
            out.left_out.append({"set": name, "why": f"its inputs take {size / 1e6:.1f} MB, over the "
                                 f"{options.budget_mb:g} MB budget (torchconform export --bound-budget-mb)"})
            return
        shapes_seen.add(key)
        taken.add(name)
        out.sets.append(InputSet(name, args, f"generated: {detail}", seed=base.seed, prelude=base.prelude,
                                 method=base.method, kwargs=kwargs, generated={**generated, "from": base.name}))

    programs = [v for v in built.variants if v.kind == "exported_program" and v.artifact is not None]
    for v in programs:
        sets = [s for s in built.input_sets if s.method == "forward" and (v.input_sets is None or
                                                                         s.name in v.input_sets)]
        if not sets:
            continue
        base = sets[0]
        leaves = program_input_leaves(v.artifact, tuple(base.args), base.kwargs, f"case {case.name!r}")
        inputs = program_inputs(v.artifact, leaves)
        spec = v.artifact.call_spec.in_spec
        for sym, d in dynamic_symbols(inputs).items():
            i0, j0 = d["where"][0]
            current = leaves[i0].shape[j0]
            where = ", ".join(f"input {i} dim {j}" for i, j in d["where"])
            label = f"in{i0}_d{j0}"
            if d["derived"]:
                out.left_out.append({"set": f"bound_{label}_*", "why": f"symbol {sym} ({where}) has dimensions "
                                     "derived from it; resizing it alone would break them"})
                continue
            values = [("min", d["min"])]
            if d["max"] is None or d["max"] > 1 << 30:
                out.left_out.append({"set": f"bound_{label}_max", "why": f"symbol {sym} ({where}) has no maximum: "
                                     "the program accepts any size; give the Dim a max to have it checked"})
            else:
                values.append(("max", d["max"]))
            hi = d["max"] if d["max"] is not None and d["max"] <= 1 << 30 else max(2 * current, d["min"] + 8)
            inside = inside_value(d["min"], hi, {current})
            if inside is not None:
                values.append(("inside", inside))
            for which, value in values:
                name = f"bound_{label}_{which}"
                if name in taken:
                    continue
                if value == current:
                    continue  # the example is already at this size
                if value < 1 or (current == 0 and value > 0):
                    out.left_out.append({"set": name, "why": f"cannot make size {value} from the example's "
                                         f"{current}"})
                    continue
                new = list(leaves)
                for i, j in d["where"]:
                    new[i] = resize(new[i], j, value, gen)
                args, kwargs = pytree.tree_unflatten(new, spec)
                add(name, base, tuple(args), dict(kwargs),
                    f"{where} (symbol {sym}, {d['min']}..{d['max'] if d['max'] is not None else 'unbounded'}) at "
                    f"its {which} {value}, from set {base.name!r} (program {v.name})",
                    {"by": "bounds", "program": v.name, "symbol": sym, "bound": which, "size": value})

    if case.mode == "trace" and built.trace_example is not None:
        ex = next((s for s in built.input_sets if len(s.args) + len(s.kwargs) == len(built.trace_example) and all(
            a is b for a, b in zip((*s.args, *s.kwargs.values()), built.trace_example))), None)
        flat, spec = pytree.tree_flatten((tuple(ex.args), dict(ex.kwargs))) if ex is not None else ([], None)
        first = next((x for x in flat if isinstance(x, torch.Tensor) and x.dim() > 0), None)
        if ex is not None and first is not None and first.shape[0] > 1:
            batch = first.shape[0]
            new = [resize(x, 0, 1, gen) if isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == batch else x
                   for x in flat]
            args, kwargs = pytree.tree_unflatten(new, spec)
            add("trace_batch1", ex, tuple(args), dict(kwargs),
                f"the trace example {ex.name!r} at batch 1 (it was traced at batch {batch}: a trace can fix its "
                "example's batch in a view or an expand)", {"by": "trace_batch1", "size": 1})

    _admitted(out, built)
    return out


def _admitted(out: Generated, built: Built) -> None:
    """Which programs' guards admit each generated set (the others do not run it)."""
    from ..authoring.variants import program_input_leaves, program_inputs

    programs = [v for v in built.variants if v.kind == "exported_program" and v.artifact is not None]
    for s in out.sets:
        out.programs[s.name] = []
        if s.method != "forward":
            continue
        for v in programs:
            try:
                leaves = program_input_leaves(v.artifact, tuple(s.args), s.kwargs, "")
            except Exception:  # noqa: BLE001 - another structure: not this program's
                continue
            if _within(leaves, program_inputs(v.artifact, leaves)):
                out.programs[s.name].append(v.name)


DEFAULT_COVERAGE = Coverage()
