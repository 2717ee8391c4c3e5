"""What a conformance case is: the data a case declares (``Case``, ``InputSet``, ``Call``) and what its build
returns (``Built``), with ``CaseError`` for a wrong declaration or build.

A case names one artifact (a TorchScript module or function), the eager reference it must agree with, and the input
sets it is checked on. Its ``build`` function does the exporting; ``writing/writer.py`` writes what it returns to disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch

from ..errors import CaseError  # noqa: F401  (re-exported: the authoring API raises it)

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
    # {"reason": ..., "torch": "<2.14"} limits the mark to runtimes whose LibTorch version matches, "device": "cuda"
    # to runs on that device type.
    xfail: str | dict[str, str] | None = None
    method: str = "forward"  # the method called (an exported method of the artifact, or forward)
    # Arguments passed by keyword, after the positional ones (stored after them; the manifest's `keywords`).
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Made by the export, not written by the case (writing/coverage.py): how ({"by": "bounds" | "trace_batch1" |
    # "fuzz", ...}); the manifest's `generated`.
    generated: dict[str, Any] | None = None


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
    # Goldens that check little (empty, constant, within the absolute tolerance) are warned about at export and
    # recorded in the manifest; True says the case means them (nothing is recorded).
    allow_degenerate: bool = False
    # Store every submodule's inputs and output per input set, for localising a mismatch (writing/submodules.py).
    record_submodules: bool = False

