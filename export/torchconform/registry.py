"""The case registry: what a conformance case is and how cases are declared and selected.

A case names one artifact (a TorchScript module or function), the eager reference it must agree with, and the input
sets it is checked on. Its ``build`` function does the exporting; ``corpus.py`` writes what it returns to disk.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch

# How the case's artifact is made: TorchScript (trace, script, hybrid, script_function), or "export": no TorchScript,
# the case's exported program (a variant) is its artifact.
Mode = Literal["trace", "script", "hybrid", "script_function", "export"]
MODES: tuple[str, ...] = ("trace", "script", "hybrid", "script_function", "export")

# Case and input-set names become directory names, ctest names and pytest ids: keep them plain.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Call:
    """A method call made on the loaded artifact before the checked call, e.g. ``decoder.set_temperature(0.25)``.

    ``method`` is a dotted path through submodules; ``args`` are JSON scalars (float, int, bool, str, None)."""

    method: str
    args: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return f"{self.method}({', '.join(repr(a) for a in self.args)})"


@dataclass
class InputSet:
    name: str
    args: tuple[Any, ...]
    description: str
    # torch.manual_seed(seed) right before every checked call (sampling paths); None: the call draws no numbers.
    seed: int | None = None
    prelude: tuple[Call, ...] = ()
    # Properties the builder asserted about this input (e.g. how many samples each expert receives).
    facts: dict[str, Any] = field(default_factory=dict)
    # Expected to fail, with the reason: the runner reports XFAIL, and XPASS (a failure) once it passes. A dict
    # {"reason": ..., "torch": "<2.14"} limits the mark to runtimes whose LibTorch version matches.
    xfail: str | dict[str, str] | None = None
    method: str = "forward"  # the method called (an exported method of the artifact, or forward)


@dataclass
class Built:
    """What a case's builder returns."""

    eager: Callable[..., Any]  # the nn.Module (in eval mode) or Python function the goldens come from
    artifact: torch.jit.ScriptModule | torch.jit.ScriptFunction | None  # None: mode "export" (no TorchScript)
    input_sets: list[InputSet]
    model: str  # human description of the model and its hyper-parameters
    trace_example: tuple[Any, ...] | None = None
    # Probes of the spec's fragile recipes: what happens if you do what the spec does.
    hazards: list[dict[str, Any]] = field(default_factory=list)
    # Other artifacts of the same model checked on the same input sets: optimizations, torch.export programs.
    variants: list[Any] = field(default_factory=list)  # list[variants.Variant]
    spec_deviations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    name: str
    mode: Mode
    description: str
    # build(seed) is called right after torch.manual_seed(seed); it draws inputs from its own generator.
    build: Callable[[int], Built]
    seed: int
    tolerance: dict[str, Any] = field(default_factory=lambda: {"default": {"mode": "allclose"}, "outputs": {}})
    xfail: str | dict[str, str] | None = None  # every input set expected to fail, with the reason (see InputSet)


class CaseError(ValueError):
    """A case declaration or a case's build is wrong; the message names the case."""


_REGISTRY: dict[str, Case] = {}


def register(case: Case) -> Case:
    if not NAME_RE.match(case.name):
        raise CaseError(f"case {case.name!r}: name must match {NAME_RE.pattern}")
    if case.mode not in MODES:
        raise CaseError(f"case {case.name!r}: unknown mode {case.mode!r} (expected one of {', '.join(MODES)})")
    if case.name in _REGISTRY:
        raise CaseError(f"case {case.name!r} is declared twice")
    _REGISTRY[case.name] = case
    return case


def all_cases() -> list[Case]:
    from . import cases  # noqa: F401  (registers the built-in cases)

    return [c for c in _REGISTRY.values() if c.name not in _USER]


_USER: dict[str, Case] = {}  # cases declared by load_user_cases, by name


def load_user_cases(spec: str) -> list[Case]:
    """Import a user's module (``mypkg.my_cases``) or file (``path/to/my_cases.py``) and return the cases it declared
    (torchconform.declare / @torchconform.case), in declaration order. Errors name the module and what went wrong."""
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    before = set(_REGISTRY)
    try:
        if spec.endswith(".py") or "/" in spec:
            path = Path(spec)
            if not path.is_file():
                raise CaseError(f"--cases {spec}: no such file")
            name = f"torchconform_user_cases_{abs(hash(str(path.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            assert module_spec and module_spec.loader
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except CaseError as e:
        raise CaseError(f"--cases {spec}: {e}") from e
    except Exception as e:  # noqa: BLE001 - the user's module failed to import: say where
        raise CaseError(f"--cases {spec}: importing it failed: {type(e).__name__}: {e}") from e
    new = [c for n, c in _REGISTRY.items() if n not in before]
    if not new:
        raise CaseError(f"--cases {spec}: it declares no cases (use torchconform.declare or @torchconform.case)")
    _USER.update({c.name: c for c in new})
    return new


def select(patterns: list[str] | None, cases: list[Case] | None = None) -> list[Case]:
    """Cases (the built-in ones unless ``cases`` is given) whose names match any of the glob patterns (all of them
    when none given). An unmatched pattern is an error, so a typo never exports or checks nothing."""
    cases = all_cases() if cases is None else cases
    if not patterns:
        return cases
    chosen = []
    for pat in patterns:
        hits = [c for c in cases if fnmatch.fnmatchcase(c.name, pat)]
        if not hits:
            raise CaseError(f"--case {pat!r} matches no case (known: {', '.join(c.name for c in cases)})")
        chosen += [c for c in hits if c not in chosen]
    return chosen
