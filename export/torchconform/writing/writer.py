"""Export cases and write the golden corpus (layout and schema: docs/corpus-format.md)."""

from __future__ import annotations

import copy
import functools
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..authoring.case import NAME_RE, Built, Case, CaseError, InputSet
from ..authoring.variants import (
    Variant,
    graph_node_counts,
    operator_namespaces,
    program_input_leaves,
    program_inputs,
    script_copy,
    user_pytree_types,
)
from ..authoring.warn import collect_warnings
from ..dtypes import dtype_name
from ..schema import validate
from . import protocol, reproducible
from .coverage import DEFAULT_COVERAGE, Coverage, Generated, generate
from .digest import sha256_file
from .submodules import RECORD_CAP_BYTES, record_calls, recordable
from .swap import replacing
from .values import UnstorableValue, degenerate, describe, freeze, max_abs_diff

FORMAT = "torchconform-corpus"
FORMAT_VERSION = 2  # 2: variants (optimized TorchScript, torch.export programs)
CORPUS_INDEX = "corpus.json"
MANIFEST = "manifest.json"
ARTIFACT = "artifact.pt"
DEFAULT_SIZE_BUDGET_MB = 256.0  # a corpus larger than this is said to be (export --size-budget-mb)
EXPORT_THREADS = 1  # goldens computed single-threaded: reproducible, and independent of the exporting machine's cores


class Said(str):
    """A variant finding that export also says (as a warning under its case, and in the end-of-export summary); in the
    manifest it is the text it is, like every finding."""


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        # (torch.backends.cpu is 2.0+; older torch, e.g. 1.13 under torchconform compat, reports it through config)
        "cpu_capability": torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu")
        else torch._C._get_cpu_capability() if hasattr(torch._C, "_get_cpu_capability") else "unknown",
        "threads": EXPORT_THREADS,
        "python_hash_seed": os.environ.get("PYTHONHASHSEED"),
    }


def apply_prelude(target: Any, s: InputSet) -> None:
    protocol.apply_prelude(target, [(c.method, c.args) for c in s.prelude])


def call(target: Any, s: InputSet) -> Any:
    """One checked call of the set (protocol.call: the seed, then the method)."""
    return protocol.call(target, s.method, s.args, s.seed, s.kwargs)


def invoke(target: Any, s: InputSet) -> Any:
    """Run one input set on ``target`` (an eager module/function or a loaded artifact): prelude calls, then the seed,
    then the call (protocol.py; the C++ runner does the same steps in the same order)."""
    apply_prelude(target, s)
    return call(target, s)


def eager_expected(built: Built, s: InputSet) -> Any:
    """The golden: the eager model (not the artifact), on a fresh copy when the prelude changes its state."""
    target = copy.deepcopy(built.eager) if s.prelude and isinstance(built.eager, torch.nn.Module) else built.eager
    with torch.no_grad():
        return freeze(invoke(target, s))


def _python_output(target: Any, s: InputSet, run: Callable[[Any, tuple[Any, ...], dict[str, Any]], Any] | None = None
                   ) -> Any:
    """What a loaded artifact returns for ``s`` in Python (a fresh copy for a prelude); an exception is returned, not
    raised: the caller records it."""
    try:
        with torch.no_grad():
            if s.prelude and isinstance(target, torch.jit.ScriptModule):
                target = script_copy(target)
            apply_prelude(target, s)
            if run is None:
                return freeze(call(target, s))
            if s.seed is not None:
                torch.manual_seed(s.seed)
            return freeze(run(target, s.args, s.kwargs))
    except Exception as e:  # noqa: BLE001 - recorded by the caller
        return e


def _mark(xfail: str | dict[str, str]) -> dict[str, str]:
    return {"reason": xfail} if isinstance(xfail, str) else dict(xfail)


def _call_program(program: torch.export.ExportedProgram, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return program.module()(*args, **kwargs)


def _write_variant(case: Case, v: Variant, built: Built, case_dir: Path, goldens: dict[str, Any],
                   artifact_output: Callable[[str], Any]) -> dict[str, Any]:
    """Write one variant's file and describe it; check it in Python on its input sets first (the manifest records
    the differences: the C++ runner is the judge, this says what Python saw)."""
    by_name = {s.name: s for s in built.input_sets}
    names = v.input_sets if v.input_sets is not None else list(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise CaseError(f"case {case.name!r}: variant {v.name!r} names unknown input sets {unknown}")
    if not NAME_RE.match(v.name):
        raise CaseError(f"case {case.name!r}: variant name {v.name!r} must match {NAME_RE.pattern}")
    entry: dict[str, Any] = {"name": v.name, "kind": v.kind, "description": v.description, "transform": v.transform}
    if v.input_sets is not None:
        entry["input_sets"] = names
    if v.artifact is None:
        if not (v.xfail and v.error):
            raise CaseError(f"case {case.name!r}: variant {v.name!r} has no artifact and no expected failure")
        entry["error"] = v.error
    else:
        (case_dir / "variants").mkdir(exist_ok=True)
        path = case_dir / "variants" / (v.name + (".pt2" if v.kind == "exported_program" else ".pt"))
        if v.kind == "exported_program":
            try:  # e.g. a user pytree type with no serialized name: "Can't serialize TreeSpec of ..."
                types = user_pytree_types(v.artifact)  # (names the namedtuples torch.export.save needs named)
                torch.export.save(v.artifact, str(path))
                loaded: Any = torch.export.load(str(path))
            except Exception as e:  # noqa: BLE001 - name the case and the variant, not a traceback
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise CaseError(f"case {case.name!r}: variant {v.name!r}: the captured program does not save and "
                                f"load again: {type(e).__name__}: {first}") from e
            entry["runtimes"] = ["aoti", "nativert"]
            entry["inputs"] = None  # filled below from the first set
            if types:
                entry["pytree_types"] = types
        else:
            _save_torchscript(v.artifact, path, v.findings)
            try:
                loaded = torch.jit.load(str(path))
            except Exception as e:  # noqa: BLE001 - a finding, and the runner will meet it too
                loaded = None
                entry["python_load_error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
                v.findings.append(f"torch.jit.load of the saved variant fails in Python: {entry['python_load_error']}")
        entry.update({"file": f"variants/{path.name}", "sha256": sha256_file(path), "bytes": path.stat().st_size,
                      "graph_node_counts": graph_node_counts(v.artifact)})
        check: dict[str, Any] = {}
        for n in names:
            s = by_name[n]
            if v.kind == "exported_program":
                leaves = program_input_leaves(v.artifact, s.args, s.kwargs,
                                              f"case {case.name!r}: variant {v.name!r}: input set {n!r}")
                kinds = program_inputs(v.artifact, [freeze(x) for x in leaves])
                if entry["inputs"] is None:
                    entry["inputs"] = kinds
                elif kinds != entry["inputs"]:
                    raise CaseError(f"case {case.name!r}: variant {v.name!r}: input set {n!r} passes {kinds}, the "
                                    f"program was specialized on {entry['inputs']}")
                # The program's module does not check dtypes in Python (it runs a float32 program on float64), the
                # runner does (AOTInductor's kernels would reinterpret the bytes): say it now.
                wrong = [f"input leaf {i} is {dtype_name(x.dtype)}, the program was captured for {k['dtype']}"
                         for i, (x, k) in enumerate(zip(leaves, kinds))
                         if isinstance(x, torch.Tensor) and "dtype" in k and dtype_name(x.dtype) != k["dtype"]]
                if wrong:
                    v.findings.append(Said(f"input set {n!r}: {'; '.join(wrong)}: the runner refuses the call"))
                if s.prelude or s.method != "forward":
                    raise CaseError(f"case {case.name!r}: variant {v.name!r}: input set {n!r} calls "
                                    f"{'a prelude' if s.prelude else s.method}; an exported program has forward only")
            if loaded is None:
                continue
            out = _python_output(loaded, s, _call_program if v.kind == "exported_program" else None)
            if isinstance(out, Exception):
                check[n] = {"error": f"{type(out).__name__}: {str(out).strip().splitlines()[0]}"}
                continue
            ref = artifact_output(n) if built.artifact is not None else None
            check[n] = {"max_abs_vs_golden": max_abs_diff(goldens[n], out),
                        "max_abs_vs_artifact": None if ref is None or isinstance(ref, Exception)
                        else max_abs_diff(ref, out)}
        entry["python_check"] = check
        if v.kind == "exported_program":
            entry["int_outputs_as_tensors"] = v.int_outputs_as_tensors
            if v.aoti_options:
                entry["aoti_options"] = dict(v.aoti_options)
            _random_draws(case, v, [by_name[n] for n in names])
    if v.tolerance is not None:
        entry["tolerance"] = v.tolerance
    entry["findings"] = v.findings
    entry["details"] = v.details
    if v.xfail:
        entry["xfail"] = _mark(v.xfail)
    return entry


RANDOM_OPS = ("rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "bernoulli",
              "multinomial", "normal", "uniform", "exponential", "poisson", "native_dropout", "dropout")


def _random_draws(case: Case, v: Variant, sets: list[InputSet]) -> None:
    """A program that draws random numbers, checked on a seeded set: AOTInductor generates its own random numbers
    (Philox) unless compiled with fallback_random, so its draws are not eager's whatever the seed. Said as a finding
    (and at export), with the option that makes them agree."""
    draws = sorted({str(n.target) for n in v.artifact.graph.nodes if n.op == "call_function"
                    and str(n.target).split(".")[1:2] and str(n.target).split(".")[1] in RANDOM_OPS})
    seeded = [s.name for s in sets if s.seed is not None]
    if draws and seeded and not v.aoti_options.get("fallback_random"):
        v.findings.append(Said(f"the program draws random numbers ({', '.join(draws)}) and is checked on seeded input "
                               f"sets ({', '.join(seeded)}): AOTInductor reproduces eager's draws only with "
                               "fallback_random: declare it with tc.Export(aoti_options={'fallback_random': True})"))


def _save_torchscript(artifact: Any, path: Path, notes: list[str]) -> None:
    """torch.jit.save, with the archive made independent of where the export ran (writing/reproducible.py)."""
    left = reproducible.save(artifact, path)
    if left:
        notes.append(f"{path.name}: {len(left)} TorchScript debug record(s) keep the absolute source paths torch "
                     f"wrote (a layout this exporter does not rewrite): {', '.join(left[:3])}")


def _check_saved_signatures(case: Case, path: Path, sets: list[InputSet]) -> None:
    """Every call an input set makes (its prelude's and its method's) binds to the *saved* artifact's schema, which
    is what the runner calls: a scripted function's save drops its default arguments (``fmt: str = "xyxy"`` becomes a
    required ``fmt``), so a set that relied on a default would only fail in C++. Said here, naming the argument."""
    try:
        saved = torch.jit.load(str(path))
    except Exception as e:  # noqa: BLE001 - whatever it is, the runner could not load it either
        raise CaseError(f"case {case.name!r}: the saved artifact does not load again: {type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
    for s in sets:
        calls = [*((c.method, c.args, {}) for c in s.prelude), (s.method, s.args, s.kwargs)]
        for method, args, kwargs in calls:
            try:
                schema = protocol.resolve_method(saved, method).schema
            except AttributeError:
                continue  # (a missing method is reported by the call itself, with its own message)
            params = [a for a in schema.arguments[1:] if not a.kwarg_only]  # [0] is self
            if len(args) > len(params):
                raise CaseError(f"case {case.name!r}, input set {s.name!r}: {method} takes {len(params)} positional "
                                f"arguments in the saved artifact ({schema}), the set passes {len(args)}")
            names = {a.name for a in schema.arguments[1:]}
            unknown = [k for k in kwargs if k not in names or k in {a.name for a in params[:len(args)]}]
            if unknown:  # e.g. a trace that dropped a keyword parameter the set passes
                raise CaseError(f"case {case.name!r}, input set {s.name!r}: the saved artifact's {method} "
                                f"({schema}) takes no keyword argument {', '.join(repr(k) for k in unknown)} "
                                "(or takes it positionally from the set already)")
            missing = [a.name for a in params[len(args):] if not a.has_default_value() and a.name not in kwargs]
            if missing:
                names = ", ".join(repr(m) for m in missing)
                if case.mode == "trace":  # nothing was scripted: the trace took its example's arguments as its own
                    why = (f"torch.jit.trace made {names} required: a trace records the arguments its example "
                           "passes, and this set leaves them out. Pass them in this set as the trace example does, or "
                           "trace a separate case whose example leaves them out (a trace has one signature), or "
                           "script the model (mode='script' keeps Optional defaults)")
                else:
                    why = ("TorchScript's save drops a scripted function's defaults: pass the argument in the input "
                           "set")
                raise CaseError(f"case {case.name!r}, input set {s.name!r}: the saved artifact's {method} has no "
                                f"default for {names} ({schema}); {why}")


def _save(value: Any, path: Path) -> dict[str, Any]:
    torch.save(value, path)
    return {"file": path.name if path.parent.name != "sets" else f"sets/{path.name}", "sha256": sha256_file(path),
            "bytes": path.stat().st_size}


def export_case(case: Case, case_dir: Path, executorch: bool = False, bundled: bool = False,
                coverage: Coverage = DEFAULT_COVERAGE) -> dict[str, Any]:
    """Build one case, write its artifact, input sets, goldens and manifest into ``case_dir``; return the manifest.
    ``executorch``/``bundled``: also its ExecuTorch programs / and their BundledPrograms (write_corpus);
    ``coverage``: the generated sets and the golden sensitivity rule (writing/coverage.py)."""
    built, extra, caught = _build(case, coverage)
    (case_dir / "sets").mkdir(parents=True)
    artifact_path = case_dir / ARTIFACT
    if (built.artifact is None) != (case.mode == "export"):
        raise CaseError(f"case {case.name!r}: mode {case.mode!r} " + ("has no TorchScript artifact" if
                        case.mode == "export" else "needs a TorchScript artifact"))
    if case.mode == "export" and not any(v.kind == "exported_program" for v in built.variants):
        raise CaseError(f"case {case.name!r}: mode 'export' needs its torch.export program (a variant)")
    if built.artifact is not None:
        _save_torchscript(built.artifact, artifact_path, built.notes)
        _check_saved_signatures(case, artifact_path, built.input_sets)
    sets, goldens = _write_sets(case, built, extra, case_dir, coverage)

    # What the TorchScript artifact returns in Python, for the variants' records (only run when a variant needs it: the
    # artifact is the runner's to run, and a broken one must not hang the export).
    by_name = {s.name: s for s in built.input_sets}
    artifact_output = functools.cache(lambda name: _python_output(built.artifact, by_name[name]))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "case": case.name,
        "mode": case.mode,
        "description": case.description,
        "model": built.model,
        **({"artifact": {"file": ARTIFACT, "sha256": sha256_file(artifact_path),
                         "bytes": artifact_path.stat().st_size}} if built.artifact is not None else {}),
        "exported_with": environment(),
        "export_conditions": {"module_mode": "eval", "grad": "disabled (torch.no_grad)",
                              "trace_example": describe(freeze(built.trace_example))
                              if built.trace_example is not None else None},
        "seeds": {"global": case.seed, "inputs": case.seed + 1},
        "tolerance": case.tolerance,
        "tracer_warnings": caught.records(("TracerWarning",)),
        "other_warnings": [w for w in caught.records() if w["category"] != "TracerWarning"],
        "hazards": built.hazards,
        "spec_deviations": built.spec_deviations,
        "notes": built.notes,
        "graph_node_counts": graph_node_counts(built.artifact) if built.artifact is not None else {},
        **({"xfail": _mark(case.xfail)} if case.xfail else {}),
        "variants": _variants(case, built, case_dir, goldens, artifact_output, executorch,
                              sets if bundled else None),
        "input_sets": sets,
        **({"coverage": extra.record()} if extra.sets or extra.left_out or extra.findings else {}),
    }
    namespaces = set().union(*(operator_namespaces(a) for a in [built.artifact, *(v.artifact for v in built.variants)]
                               if a is not None))
    if namespaces:  # which libraries were loaded is a hint for the runner's error (it never loads them itself)
        manifest["operators"] = {"namespaces": sorted(namespaces),
                                 "libraries": sorted({Path(p).name for p in torch.ops.loaded_libraries})}
    problem = validate("manifest", json.loads(json.dumps(manifest)))
    if problem:  # the writer and the schema disagree: a bug here, never a corpus the runner would refuse
        raise CaseError(f"case {case.name!r}: manifest does not satisfy docs/corpus-schema.json: {problem}")
    (case_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _build(case: Case, coverage: Coverage) -> tuple[Built, Generated, Any]:
    """The case built (its warnings caught), its input set names checked, and its generated sets added."""
    torch.manual_seed(case.seed)
    with collect_warnings() as caught:
        try:
            built = case.build(case.seed)
        except CaseError as e:
            if str(e).startswith(f"case {case.name!r}"):
                raise
            raise CaseError(f"case {case.name!r}: {e}") from e
        except Exception as e:
            raise CaseError(f"case {case.name!r}: build failed: {type(e).__name__}: {e}") from e
    names = [s.name for s in built.input_sets]
    if not names:
        raise CaseError(f"case {case.name!r}: no input sets")
    if len(set(names)) != len(names):
        raise CaseError(f"case {case.name!r}: duplicate input set names {names}")
    for s in built.input_sets:
        if not NAME_RE.match(s.name):
            raise CaseError(f"case {case.name!r}: input set name {s.name!r} must match {NAME_RE.pattern}")
    try:
        extra = generate(case, built, coverage)
    except CaseError as e:
        raise CaseError(f"case {case.name!r}: generating the bound sets: {e}") from e
    _add_generated(built, extra)
    return built, extra, caught


def _write_sets(case: Case, built: Built, extra: Generated, case_dir: Path, coverage: Coverage
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every input set's inputs and golden (computed by the eager model), with its submodule records where the case
    asks for them: the manifest's input_sets, and the goldens by set name. A generated set the model rejects, or one
    over the budget, is dropped with a finding."""
    sets: list[dict[str, Any]] = []
    goldens: dict[str, Any] = {}
    recording = case.record_submodules and isinstance(built.artifact, torch.jit.ScriptModule) and isinstance(
        built.eager, torch.nn.Module)
    if case.record_submodules and not recording:
        raise CaseError(f"case {case.name!r}: record_submodules needs an nn.Module with a TorchScript module artifact "
                        f"(mode {case.mode!r}: the replay calls the artifact's submodules)")
    recorded_bytes = 0
    for s in list(built.input_sets):
        try:  # keyword arguments are stored after the positional ones, their names in the manifest
            args = freeze(tuple(s.args) + tuple(s.kwargs.values()))
        except UnstorableValue as e:
            raise CaseError(f"case {case.name!r}, input set {s.name!r}: the inputs: {e}") from e
        try:
            expected = eager_expected(built, s)
        except UnstorableValue as e:  # e.g. a user pytree type (the program may still capture it)
            raise CaseError(f"case {case.name!r}, input set {s.name!r}: the eager model's output: {e}") from e
        except Exception as e:  # noqa: BLE001 - a generated set the model rejects is a finding, not a corpus error
            if s.generated is None:
                raise
            _drop_generated(built, extra, s, f"the eager model fails on generated set {s.name!r} ({s.description[11:]})"
                            f": {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}; the "
                            "program's guards admit this shape: narrow the Dim's range, or fix the model")
            continue
        if s.generated is not None and _bytes_of(args) + _bytes_of(expected) > coverage.budget_mb * 1e6:
            _drop_generated(built, extra, s, None, f"its inputs and golden take "
                            f"{(_bytes_of(args) + _bytes_of(expected)) / 1e6:.1f} MB, over the {coverage.budget_mb:g} "
                            "MB budget (torchconform export --bound-budget-mb)")
            continue
        goldens[s.name] = expected
        sets.append({
            "name": s.name,
            "description": s.description,
            "method": s.method,
            "seed": s.seed,
            "prelude": [{"method": c.method, "args": list(c.args)} for c in s.prelude],
            **({"keywords": list(s.kwargs)} if s.kwargs else {}),
            "inputs": _save(args, case_dir / "sets" / f"{s.name}.inputs.pt"),
            "expected": _save(expected, case_dir / "sets" / f"{s.name}.expected.pt"),
            "inputs_signature": describe(args),
            "expected_signature": describe(expected),
            "facts": s.facts,
            **({"xfail": _mark(s.xfail)} if s.xfail else {}),
            **({"generated": s.generated} if s.generated is not None else {}),
        })
        if recording and not recordable(s):
            try:
                records, skipped = record_calls(built.eager, lambda s=s: invoke(built.eager, s))
            except Exception as e:  # noqa: BLE001 - the model's own failure under hooks: name the case
                raise CaseError(f"case {case.name!r}, input set {s.name!r}: recording submodule calls failed: "
                                f"{type(e).__name__}: {e}") from e
            ref = _save(records, case_dir / "sets" / f"{s.name}.submodules.pt")
            recorded_bytes += ref["bytes"]
            cap = int(os.environ.get("TORCHCONFORM_RECORD_CAP_MB", RECORD_CAP_BYTES >> 20)) << 20
            if recorded_bytes > cap:
                raise CaseError(f"case {case.name!r}: the submodule records come to {recorded_bytes / 1e6:.1f} MB by "
                                f"input set {s.name!r}, over the {cap >> 20} MiB cap: record a case with fewer or "
                                "smaller input sets, or raise the cap knowingly (TORCHCONFORM_RECORD_CAP_MB)")
            sets[-1]["submodules"] = {**ref, "calls": len(records), **({"skipped": skipped} if skipped else {})}
        elif recording:
            sets[-1]["submodules_skipped"] = recordable(s)
        weak = [] if case.allow_degenerate else degenerate(expected, case.tolerance, coverage.sensitivity)
        if weak:
            sets[-1]["degenerate"] = weak
    return sets, goldens


def _add_generated(built: Built, extra: Generated) -> None:
    """The generated sets join the case's: every TorchScript artifact runs them, each program those its guards admit
    (a program that ran every set is given its list explicitly)."""
    if not extra.sets:
        return
    written = [s.name for s in built.input_sets]
    built.input_sets = [*built.input_sets, *extra.sets]
    for v in built.variants:
        if v.kind == "exported_program":
            v.input_sets = [*(v.input_sets if v.input_sets is not None else written),
                            *(s.name for s in extra.sets if v.name in extra.programs.get(s.name, []))]


def _drop_generated(built: Built, extra: Generated, s: InputSet, finding: str | None, left_out: str = "") -> None:
    built.input_sets = [x for x in built.input_sets if x.name != s.name]
    extra.sets = [x for x in extra.sets if x.name != s.name]
    for v in built.variants:
        if v.input_sets is not None and s.name in v.input_sets:
            v.input_sets = [n for n in v.input_sets if n != s.name]
    if finding:
        extra.findings.append(finding)
    else:
        extra.left_out.append({"set": s.name, "why": left_out})


def _bytes_of(value: Any) -> int:
    import torch.utils._pytree as pytree

    return sum(x.numel() * x.element_size() for x in pytree.tree_leaves(value) if isinstance(x, torch.Tensor))


def _variants(case: Case, built: Built, case_dir: Path, goldens: dict[str, Any],
              artifact_output: Callable[[str], Any], executorch: bool,
              bundle_sets: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The case's variants' manifest entries; with ``executorch``, each exported program's ExecuTorch lowerings right
    after it (writing/executorch.py), bundled with ``bundle_sets`` (the input-set records) when given."""
    out = []
    for v in built.variants:
        entry = _write_variant(case, v, built, case_dir, goldens, artifact_output)
        out.append(entry)
        if executorch and v.kind == "exported_program" and v.artifact is not None:
            from .executorch import variants as executorch_variants

            out += executorch_variants(case.name, v.artifact, entry, case_dir, bundle_sets, case.tolerance)
    return out


def _sizes(manifest: dict[str, Any]) -> str:
    """What each file of a case costs: the artifact, every variant (each holds its own copy of the weights: TorchScript
    and .pt2 archives cannot share storage with another file), and the input sets with their goldens."""
    def mb(n: int) -> str:
        return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"

    parts = [f"artifact {mb(manifest['artifact']['bytes'])}"] if "artifact" in manifest else []
    bundles = [v["bundled"] for v in manifest["variants"] if "bytes" in v.get("bundled", {})]
    parts += [f"{v['name']} {mb(v['bytes'])}" for v in manifest["variants"] if "bytes" in v]
    parts += [f"{Path(b['file']).name} {mb(b['bytes'])}" for b in bundles]
    data = sum(s[k]["bytes"] for s in manifest["input_sets"] for k in ("inputs", "expected", "submodules") if k in s)
    total = data + sum(int(p["bytes"]) for p in [manifest.get("artifact", {"bytes": 0}), *manifest["variants"],
                                                 *bundles] if "bytes" in p)
    return ", ".join([*parts, f"input sets and goldens {mb(data)}"]) + f" (total {mb(total)})"


def write_corpus(out: Path, cases: list[Case], *, force: bool = False, keep_going: bool = False,
                 envelope: bool = False, executorch: bool = False, bundled: bool = False,
                 coverage: Coverage = DEFAULT_COVERAGE, size_budget_mb: float = DEFAULT_SIZE_BUDGET_MB,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[str]:
    """Export ``cases`` into the corpus directory ``out``.

    The corpus is written into a staging directory beside it and swapped into place at the end (``swap.replacing``),
    so an export that fails part way leaves the previous corpus as it was. An existing corpus is replaced only with
    ``force``. Exports into the same directory take turns. Every case is tried: when some fail, CaseError lists them
    all and nothing is written, unless ``keep_going``: then the corpus holds the others and the failures are
    returned (one message each). ``envelope``: also measure each golden's noise envelope (writing/envelope.py).
    ``executorch``: also lower every exported program to ExecuTorch (writing/executorch.py; needs the package);
    ``bundled``: that, and each ExecuTorch program also written as a BundledProgram with the case's input sets.
    ``coverage``: the sets generated at each dynamic dimension's bounds and the golden sensitivity rule
    (writing/coverage.py). The export ends with its total size (a warning past ``size_budget_mb``) and a summary of
    every warning it printed."""
    out = Path(out)
    executorch = executorch or bundled
    if executorch:
        from .executorch import available

        missing = available()
        if missing:
            flag = "--bundled" if bundled else "--executorch"
            raise CaseError(f"{flag}: {missing}; ci/executorch.sh sets up an environment that has it")
    t_all = time.perf_counter()
    findings: list[str] = []
    with replacing(out, force=force, log=log) as staging:
        failed = _write_into(staging, cases, log, executorch, bundled, coverage, findings)
        exported = len(cases) - len(failed)
        if failed and (not keep_going or not exported):
            raise CaseError(f"{len(failed)} of {len(cases)} cases failed to export"
                            + (" (nothing written; --keep-going writes the others)" if exported else "")
                            + ":\n  " + "\n  ".join(failed))
        if envelope:
            from .envelope import measure

            measure(staging, EXPORT_THREADS, log)
        total = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
    if total > size_budget_mb * 1e6:
        findings.append(f"the corpus takes {total / 1e6:.1f} MB, over the {size_budget_mb:g} MB budget "
                        "(--size-budget-mb): each TorchScript variant and exported program stores the weights again; "
                        "the sizes per case above say where it goes")
    if findings:
        log(f"findings of this export ({len(findings)}):")
        for line in findings:
            log(f"  - {line}")
    log(f"wrote {out} ({exported} cases, {total / 1e6:.1f} MB, {time.perf_counter() - t_all:.1f} s)"
        + (f"; {len(failed)} failed and left out" if failed else ""))
    return failed


def _write_into(tmp: Path, cases: list[Case], log: Callable[[str], None], executorch: bool = False,
                bundled: bool = False, coverage: Coverage = DEFAULT_COVERAGE,
                findings: list[str] | None = None) -> list[str]:
    """Exports each case into ``tmp``; returns the failures (a case that fails leaves nothing behind). Every warning
    is printed under its case and appended to ``findings`` (the end-of-export summary)."""
    said = findings if findings is not None else []

    def warn(line: str) -> None:
        said.append(line)
        log(f"  warning: {line}")

    threads = torch.get_num_threads()
    torch.set_num_threads(EXPORT_THREADS)
    failed: list[str] = []
    try:
        index = []
        for i, case in enumerate(cases, 1):
            t0 = time.perf_counter()
            try:
                manifest = export_case(case, tmp / case.name, executorch, bundled, coverage)
            except CaseError as e:
                failed.append(str(e))
                shutil.rmtree(tmp / case.name, ignore_errors=True)
                log(f"[{i}/{len(cases)}] {case.name}: FAILED: {str(e).splitlines()[0]}")
                continue
            index.append({"name": case.name, "manifest": f"{case.name}/{MANIFEST}",
                          "sha256": sha256_file(tmp / case.name / MANIFEST)})
            log(f"[{i}/{len(cases)}] {case.name}: {case.mode}, {len(manifest['input_sets'])} input sets, "
                f"{len(manifest['tracer_warnings'])} distinct tracer warnings ({time.perf_counter() - t0:.1f} s)")
            log(f"  sizes: {_sizes(manifest)}")
            for v in manifest["variants"]:  # what Python saw when it ran the variant: say it now, not only there
                if v.get("python_load_error") and not v.get("xfail"):
                    warn(f"{case.name}:{v['name']}: PyTorch cannot reload the saved variant in Python "
                         f"({v['python_load_error']}): the runner will fail to load it too (an ERROR per set). Mark "
                         f"it as an expected failure: optimizations=tc.Optimizations(xfail={{'{v['name']}': "
                         "'<why>'}})")
                for n, check in v.get("python_check", {}).items():
                    if "error" in check and not v.get("xfail"):
                        warn(f"{case.name}:{v['name']}/{n}: the variant fails this set in Python: {check['error']}")
                for finding in v.get("findings", []):
                    if isinstance(finding, Said):
                        warn(f"{case.name}:{v['name']}: {finding}")
            cov = manifest.get("coverage", {})
            if cov.get("generated"):
                by = {s["name"]: s["generated"]["by"] for s in manifest["input_sets"] if "generated" in s}
                kinds = {"bounds": "at the programs' bounds", "trace_batch1": "the trace example at batch 1",
                         "fuzz": "saved by torchconform fuzz"}
                for kind, what in kinds.items():
                    names = [n for n in cov["generated"] if by.get(n) == kind]
                    if names:
                        log(f"  {len(names)} generated input sets, {what}: {', '.join(names)}")
            for left in cov.get("left_out", []):
                log(f"  note: {case.name}: generated set {left['set']} left out: {left['why']}")
            for finding in cov.get("findings", []):
                warn(f"{case.name}: {finding}")
            for s in manifest["input_sets"]:
                for why in s.get("degenerate", []):
                    warn(f"{case.name}/{s['name']}: the golden checks little: {why} (allow_degenerate=True if that "
                         "is what the case means)")
        corpus = {"format": FORMAT, "format_version": FORMAT_VERSION, "exported_with": environment(),
                  "cases": index}
        assert not validate("corpus", corpus), validate("corpus", corpus)
        (tmp / CORPUS_INDEX).write_text(json.dumps(corpus, indent=2) + "\n")
    finally:
        torch.set_num_threads(threads)
    return failed
