"""Declaring your own cases: ``torchconform.declare`` (or the ``@torchconform.case`` decorator) in your own module,
then ``torchconform export --cases your_module_or_file.py``. See examples/README.md for a walkthrough.

A declaration says how to build the model, how to export it, and which inputs to check it on; torchconform does the
rest exactly as for its built-in cases: eval mode, no grad, seeded, goldens from the eager model, the artifact
verified from C++ (``torchconform verify`` / ``torchconform-run``), pytest and ctest.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .case import MODES, Built, Case, CaseError, InputSet
from .registry import CASES_FILE_PACKAGE, register
from .variants import capture, torchscript_variants


@dataclass(frozen=True)
class XFail:
    """An expected failure with its reason; ``torch`` limits it to runtimes whose LibTorch version matches a
    specifier such as ``"<2.14"`` or ``">=2.13,<2.15"`` (checked by the runner against the LibTorch it runs);
    ``device`` ("cpu" or "cuda") limits it to runs on that device type (e.g. seeded sampling, whose CPU golden
    cannot hold on CUDA's generator)."""

    reason: str
    torch: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.device not in (None, "cpu", "cuda"):
            raise CaseError(f"XFail(device=...) must be 'cpu' or 'cuda', got {self.device!r}")


@dataclass(frozen=True)
class Inputs:
    """One input set: the positional arguments (tensors of any dtype, tuples, lists, str-keyed dicts, None, bool,
    int, float, str), and optionally the method to call (an exported method other than ``forward``), a seed for
    sampling code, a description and an expected failure."""

    args: tuple[Any, ...]
    method: str = "forward"
    description: str = ""
    seed: int | None = None
    xfail: str | XFail | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)  # arguments passed by keyword (e.g. attention_mask=)


@dataclass(frozen=True)
class Export:
    """Also capture the model with ``torch.export`` (run from C++ through AOTInductor). ``dynamic_shapes`` as for
    ``torch.export.export``; ``expect_failure``: the reason it cannot be captured (recorded; strict)."""

    dynamic_shapes: Any = None
    input_sets: list[str] | None = None
    expect_failure: str | None = None
    int_outputs_as_tensors: bool = False
    # The captured program's results, run from C++: expected to fail (e.g. on some LibTorch versions), or compared
    # under their own tolerance policy ({"default": {...}, "outputs": {...}}; a looser one is shown as LOOSENED).
    xfail: str | XFail | None = None
    tolerance: dict[str, Any] | None = None
    # AOTInductor's own options for the program's package (torch._inductor's config names -> bool, int, float or
    # str), e.g. {"fallback_random": True} (a seeded program draws eager's numbers) or {"emulate_precision_casts":
    # True} (a bf16 program rounds as eager does). Recorded in the manifest and part of the package's cache key.
    aoti_options: dict[str, Any] | None = None


@dataclass(frozen=True)
class Optimizations:
    """Also check the TorchScript artifact's optimized variants (``frozen``, ``optimized``, ``passes``), each with an
    optional expected failure and tolerance policy by variant name, e.g. ``xfail={"optimized": "MKLDNN constants do
    not serialize"}``. ``optimizations=True`` is ``Optimizations()``."""

    xfail: dict[str, str | XFail] = field(default_factory=dict)
    tolerance: dict[str, dict[str, Any]] = field(default_factory=dict)


USER_MODES = MODES  # trace, script, hybrid, script_function, export


def _xfail_mark(x: str | XFail | None) -> Any:
    if x is None or isinstance(x, str):
        return x
    return {"reason": x.reason, **({"torch": x.torch} if x.torch else {}), **({"device": x.device} if x.device else {})}


def _declared_in(model: Callable[..., Any]) -> str:
    """Where a case was declared, as its author knows it: the file name (a module imported by name keeps it)."""
    import sys

    module = sys.modules.get(model.__module__)
    file = getattr(module, "__file__", None)
    from_file = model.__module__.startswith(CASES_FILE_PACKAGE + ".")
    return Path(file).name if file and from_file else model.__module__


def _check_signature(name: str, fn: Callable[..., Any], set_name: str, method: str, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins and some scripted callables have no Python signature: the call itself will tell
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        raise CaseError(f"case {name!r}: input set {set_name!r} does not match {method}{sig}: {e}") from None


def _trace(eager: torch.nn.Module, example: InputSet, *, strict: bool) -> torch.jit.ScriptModule:
    """torch.jit.trace on the example set. With keyword arguments every argument is given by name
    (``example_kwarg_inputs``): given positional example inputs as well, torch.jit.trace ignores the keyword ones and
    the traced forward silently loses those parameters (torch 2.13)."""
    if not example.kwargs:
        return torch.jit.trace(eager, example.args, strict=strict)
    bound = inspect.signature(eager.forward).bind(*example.args, **example.kwargs)
    return torch.jit.trace(eager, example_kwarg_inputs=dict(bound.arguments), strict=strict)


def declare(name: str, *, model: Callable[[], Any], mode: str, inputs: dict[str, Any] | Callable[[torch.Generator],
            dict[str, Any]], description: str = "", example: str | None = None, seed: int = 0,
            tolerance: dict[str, Any] | None = None, xfail: str | XFail | None = None,
            artifact: Callable[[Any], Any] | None = None, export: Export | None = None,
            optimizations: bool | Optimizations = False, allow_degenerate: bool = False,
            trace_strict: bool = True, record_submodules: bool = False) -> Case:
    """Declare a case. ``model``: a factory returning the eager ``nn.Module`` (or, for ``script_function``, the
    Python function itself). ``mode``: ``trace``, ``script``, ``hybrid`` (give ``artifact``: a function building the
    TorchScript artifact from the eager model), ``script_function`` or ``export`` (a torch.export program only).
    ``inputs``: name -> tuple of positional arguments or :class:`Inputs`, or a function of a seeded
    ``torch.Generator`` returning that dict. ``example``: the input set traced / exported (default: the first).
    ``tolerance``: ``{"default": {...}, "outputs": {"$[0]": {...}}}`` (docs/corpus-format.md). ``export``: also run
    the model through torch.export (for mode ``export``: how; default static shapes); its ``xfail`` and ``tolerance``
    apply to the program only. ``optimizations``: also check torch.jit.freeze, optimize_for_inference and the explicit
    passes of the TorchScript artifact (an :class:`Optimizations` gives each its own mark and tolerance).
    ``allow_degenerate``: goldens that check little (empty, constant, all within atol) are what the case means: no
    warning at export, nothing recorded. ``trace_strict``: ``torch.jit.trace(strict=...)``; False lets a traced
    model return dicts and lists (their structure is then fixed by the trace). ``record_submodules``: also store every
    submodule's inputs and output per input set, so that a mismatch is localised to the first submodule whose own
    output diverges (``torchconform export --record-submodules`` does it for every case; docs/localize.md)."""
    if mode not in USER_MODES:
        raise CaseError(f"case {name!r}: unknown mode {mode!r} (expected one of {', '.join(USER_MODES)})")
    if mode == "hybrid" and artifact is None:
        raise CaseError(f"case {name!r}: mode 'hybrid' needs artifact=<function building the TorchScript module>")
    if mode != "hybrid" and artifact is not None:
        raise CaseError(f"case {name!r}: artifact= is for mode 'hybrid' only")
    if not callable(model):
        raise CaseError(f"case {name!r}: model must be a factory (a callable returning the model), got "
                        f"{type(model).__name__}")

    def build(case_seed: int) -> Built:
        gen = torch.Generator().manual_seed(case_seed + 1)
        sets_in = inputs(gen) if callable(inputs) else inputs
        if not isinstance(sets_in, dict) or not sets_in:
            raise CaseError(f"case {name!r}: inputs must be a non-empty dict of name -> args")
        eager = model()
        if isinstance(eager, torch.nn.Module):
            eager.eval()
        elif mode != "script_function":
            raise CaseError(f"case {name!r}: mode {mode!r} needs an nn.Module, the factory returned "
                            f"{type(eager).__name__}")
        sets = []
        for set_name, spec in sets_in.items():
            spec = spec if isinstance(spec, Inputs) else Inputs(spec if isinstance(spec, tuple) else (spec,))
            target = getattr(eager, spec.method, None) if spec.method != "forward" else eager
            if target is None:
                raise CaseError(f"case {name!r}: input set {set_name!r} calls method {spec.method!r}, which the "
                                f"model does not have")
            _check_signature(name, target.forward if isinstance(target, torch.nn.Module) else target, set_name,
                             spec.method, spec.args, spec.kwargs)
            sets.append(InputSet(set_name, spec.args, spec.description or set_name, seed=spec.seed,
                                 xfail=_xfail_mark(spec.xfail), method=spec.method, kwargs=dict(spec.kwargs)))
        ex = next((s for s in sets if s.name == example), None) if example else sets[0]
        if ex is None:
            raise CaseError(f"case {name!r}: example {example!r} is not one of the input sets {list(sets_in)}")
        with torch.no_grad():  # warnings reach export_case, which records them in the manifest
            try:
                if mode == "trace":
                    art = _trace(eager, ex, strict=trace_strict)
                elif mode in ("script", "script_function"):
                    art = torch.jit.script(eager)
                elif mode == "hybrid":
                    art = artifact(eager)  # type: ignore[misc]
                else:
                    art = None
            except Exception as e:  # noqa: BLE001 - the user's model: name the case and the step
                raise CaseError(f"case {name!r}: {'torch.jit.' + mode if mode != 'hybrid' else 'artifact()'} "
                                f"failed: {type(e).__name__}: {str(e).strip().splitlines()[0]}") from e
        variants = []
        if optimizations and isinstance(art, torch.jit.ScriptModule):
            opts = optimizations if isinstance(optimizations, Optimizations) else Optimizations()
            try:
                variants += torchscript_variants(art, xfail={k: _xfail_mark(v) for k, v in opts.xfail.items()},
                                                 tolerance=dict(opts.tolerance))
            except CaseError as e:
                raise CaseError(f"case {name!r}: optimizations: {e}") from e
        program = export or (Export() if mode == "export" else None)
        if program is not None:
            forward_sets = [s.name for s in sets if s.method == "forward"]  # a program has forward only
            variants.append(capture(
                "export", eager, ex.args, program.dynamic_shapes, description="torch.export of the model",
                kwargs=ex.kwargs,
                input_sets=program.input_sets if program.input_sets is not None else forward_sets,
                expect_failure=program.expect_failure,
                int_outputs_as_tensors=program.int_outputs_as_tensors))
            if program.xfail is not None or program.tolerance is not None:
                if variants[-1].artifact is None:
                    raise CaseError(f"case {name!r}: Export(xfail=/tolerance=) are for the captured program's "
                                    "results; this capture failed (expect_failure= marks that)")
                variants[-1].xfail = _xfail_mark(program.xfail)
                variants[-1].tolerance = program.tolerance
            if program.aoti_options:
                bad = {k: v for k, v in program.aoti_options.items()
                       if not isinstance(k, str) or not isinstance(v, (bool, int, float, str))}
                if bad:
                    raise CaseError(f"case {name!r}: Export(aoti_options=...) takes config names and bool, int, "
                                    f"float or str values, got {bad!r}")
                variants[-1].aoti_options = dict(program.aoti_options)
        return Built(eager=eager, artifact=art, input_sets=sets, variants=variants,
                     model=f"{type(eager).__name__} (user case, declared in {_declared_in(model)})",
                     trace_example=tuple(ex.args) + tuple(ex.kwargs.values()) if mode == "trace" else None)

    tol = tolerance or {"default": {"mode": "allclose"}, "outputs": {}}
    return register(Case(name, "export" if mode == "export" else mode, description or name, build, seed, tol,
                         xfail=_xfail_mark(xfail), allow_degenerate=allow_degenerate,
                         record_submodules=record_submodules))


def case(*, mode: str, inputs: Any, name: str | None = None, **kwargs: Any) -> Callable[[Callable[[], Any]], Any]:
    """Decorator form of :func:`declare` on the model factory; the case is named after the function unless ``name``
    is given."""

    def wrap(factory: Callable[[], Any]) -> Callable[[], Any]:
        declare(name or factory.__name__, model=factory, mode=mode, inputs=inputs, **kwargs)
        return factory

    return wrap
