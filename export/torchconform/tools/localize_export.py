"""``torchconform localize``: where a torch.export program starts to differ from the eager model.

The eager side is the set's submodule records (``export --record-submodules``: what every submodule of the eager model
returned while the golden was computed, read hash-checked through the core). The program side, two ways:

- **fx** (always): the program's graph (``ExportedProgram.module()``) runs node by node under ``torch.fx.Interpreter``
  on the set's inputs. Every node carries ``nn_module_stack``, the eager submodules it was captured inside; a
  submodule call's output is the one node of its scope that is used outside it. That node's value is compared with
  the recorded eager output. The values are the program's own, end to end (no re-feeding): the first scope in
  execution order that diverges is where the capture starts to differ from eager, caught before any lowering.
- **aoti** (``--aoti``, costs AOTInductor compiles): the same scope outputs are made extra outputs of a debug program
  (the graph's output node extended, then exported and compiled again for this set's shapes), which the core's C++
  loader runs (``_core.run_aoti_package``: AOTIModelPackageLoader, as the runner does); each extra output is compared
  with the record. Marking values as outputs can change what the compiler fuses: when the case's own package fails on
  the set and the debug package's model outputs pass, the mismatch disappeared, and the command bisects instead, over
  graph prefixes (one program per probe whose only output is one scope's node; log2(scopes) compiles), and says so.
  ``--method bisect`` bisects directly.

Nothing here changes a verdict; the runner's comparison of the package with the goldens is the verdict.
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils import _pytree as pytree

from .. import _core
from ..errors import CorpusInputError, UsageError
from ..text import terminal


@dataclass
class Scope:
    key: str  # the nn_module_stack key (one per call of a submodule)
    path: str  # the submodule's dotted path in the eager model
    call: int  # its n-th call
    nodes: list[Any] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)  # nodes of the scope used outside it
    end: int = 0  # graph position of its last node
    depth: int = 0


@dataclass
class Check:
    path: str
    call: int
    node: str = ""  # the graph node whose value is compared
    compared: bool = False
    why_not: str = ""
    ok: bool = True
    summary: str = ""
    max_abs: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def scopes(gm: torch.fx.GraphModule) -> list[Scope]:
    """The submodule calls of a captured graph, in the order they complete (a child before its parent)."""
    found: dict[str, Scope] = {}
    calls: dict[str, int] = {}
    order = [n for n in gm.graph.nodes if n.op not in ("placeholder", "get_attr", "output")]
    for i, n in enumerate(order):
        stack = n.meta.get("nn_module_stack") or {}
        for depth, (key, entry) in enumerate(stack.items()):
            path = entry[0] if isinstance(entry, tuple) else str(entry)
            if not path:  # the model itself: compared as the golden, not here
                continue
            if key not in found:
                found[key] = Scope(key, path, calls.get(path, 0), depth=depth)
                calls[path] = calls.get(path, 0) + 1
            found[key].nodes.append(n)
            found[key].end = i
    for s in found.values():
        members = set(s.nodes)
        # tensor values only: sizes (SymInts) computed once and shared by later calls are not a module's output
        s.outputs = [n for n in s.nodes if isinstance(n.meta.get("val"), torch.Tensor)
                     and any(u not in members for u in n.users)]
    return sorted(found.values(), key=lambda s: (s.end, -s.depth))


def _records(corpus: Any, case: str, set_name: str) -> dict[tuple[str, int], Any]:
    recs = _core.load_records(corpus, case, set_name)
    if recs is None:
        raise CorpusInputError(f"{case}/{set_name}: no submodule records (export with --record-submodules, or "
                               "declare(record_submodules=True))")
    return {(r[0], int(r[1])): r[-1] for r in recs}


def _compare(scope: Scope, value: Any, records: dict[tuple[str, int], Any], tolerance: dict[str, Any]) -> Check:
    check = Check(scope.path, scope.call)
    expected = records.get((scope.path, scope.call))
    if isinstance(expected, (tuple, list, dict)):
        # e.g. MultiheadAttention's (output, None): the graph has only the tensor
        tensors = [x for x in pytree.tree_leaves(expected) if isinstance(x, torch.Tensor)]
        if len(tensors) == 1:
            expected = tensors[0]
    if expected is None:
        check.why_not = "no eager record of this call (not a hooked submodule call in eager)"
        return check
    if len(scope.outputs) != 1:
        check.why_not = (f"{len(scope.outputs)} values leave the scope in the graph "
                         f"({', '.join(n.name for n in scope.outputs[:4])}): which is the module's output is "
                         "ambiguous")
        return check
    check.node = scope.outputs[0].name
    c = _core.compare(expected, value, tolerance)
    check.compared, check.ok, check.summary = True, bool(c.ok), c.summary()
    check.max_abs = c.max_abs
    return check


class _Recorder(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n: Any) -> Any:
        v = super().run_node(n)
        self.values[n.name] = v
        return v


def _graph_module(program: Any) -> torch.fx.GraphModule:
    """The program's graph as a module taking the flat input leaves and returning the flat output values."""
    gm = program.module()
    for n in list(gm.graph.nodes):  # the input guards of the unlifted module: not a computation of the model
        if n.op == "call_module" and n.target == "_guards_fn" and not n.users:
            gm.graph.erase_node(n)
    gm.graph._codegen = torch.fx.graph.CodeGen()  # flat leaves in, flat values out
    gm.recompile()
    return gm


def _flat_inputs(program: Any, args: tuple, keywords: list[str]) -> list[Any]:
    from ..authoring.variants import program_input_leaves

    split = len(args) - len(keywords)
    return program_input_leaves(program, tuple(args[:split]), dict(zip(keywords, args[split:])), "input set")


def fx_checks(program: Any, args: tuple, keywords: list[str], records: dict[tuple[str, int], Any],
              tolerance: dict[str, Any]) -> list[Check]:
    gm = _graph_module(program)
    flat = _flat_inputs(program, args, keywords)
    rec = _Recorder(gm)
    with torch.no_grad():
        rec.run(*flat)
    return [_compare(s, rec.values[s.outputs[0].name] if len(s.outputs) == 1 else None, records, tolerance)
            for s in _eager_scopes(gm, records)]


def _eager_scopes(gm: torch.fx.GraphModule, records: dict[tuple[str, int], Any]) -> list[Scope]:
    """The graph's scopes that name a submodule the eager run recorded (export adds scopes of its own, e.g. for
    metadata hooks)."""
    paths = {p for p, _ in records}
    return [s for s in scopes(gm) if s.path in paths]


def _debug_package(program: Any, flat: list[Any], extra: list[str], workdir: Path, tag: str
                   ) -> tuple[Path, int]:
    """A package of the program whose outputs are its model outputs followed by the named nodes (``extra``), for
    this set's shapes. Returns (package, number of model outputs)."""
    gm = _graph_module(program)
    out = gm.graph.output_node()
    model_outputs = list(pytree.tree_leaves(out.args[0]))
    by_name = {n.name: n for n in gm.graph.nodes}
    out.args = (tuple(model_outputs) + tuple(by_name[x] for x in extra),)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    with torch.no_grad():
        debug = torch.export.export(gm, tuple(flat), strict=False)
        package = workdir / f"{tag}.pt2"
        torch._inductor.aoti_compile_and_package(debug, package_path=str(package))
    return package, len(model_outputs)


def _tensors(flat: list[Any]) -> list[torch.Tensor]:
    return [x for x in flat if isinstance(x, torch.Tensor)]


def aoti_checks(program: Any, args: tuple, keywords: list[str], records: dict[tuple[str, int], Any],
                tolerance: dict[str, Any], golden: Any, case_package: Path | None, device: str, method: str,
                log: Callable[[str], None]) -> tuple[list[Check], list[str]]:
    """Checks of the scope outputs as AOTInductor computes them, and notes on what was done."""
    flat = _flat_inputs(program, args, keywords)
    all_scopes = _eager_scopes(_graph_module(program), records)
    usable = [s for s in all_scopes if len(s.outputs) == 1 and (s.path, s.call) in records]
    notes: list[str] = []
    golden_leaves = tuple(pytree.tree_leaves(golden))

    def model_ok(outputs: list[torch.Tensor]) -> bool:
        return bool(_core.compare(golden_leaves, tuple(outputs), tolerance).ok)

    with tempfile.TemporaryDirectory(prefix="torchconform-localize-") as tmp:
        work = Path(tmp)
        if method == "mark":
            log(f"compiling a debug package with {len(usable)} intermediate outputs")
            package, n = _debug_package(program, flat, [s.outputs[0].name for s in usable], work, "marked")
            outs = _core.run_aoti_package(str(package), _tensors(flat), device)
            notes.append(f"marked {len(usable)} scope outputs as extra outputs of one debug package")
            marked_ok = model_ok(outs[:n])
            if case_package is not None and case_package.exists():
                original_ok = model_ok(_core.run_aoti_package(str(case_package), _tensors(flat), device))
                if not original_ok and marked_ok:
                    notes.append("marking the intermediate values as outputs made the mismatch disappear (the "
                                 "compiler fused differently): bisecting over graph prefixes instead")
                    method = "bisect"
            if method == "mark":
                by_key = {s.key: v for s, v in zip(usable, outs[n:])}
                return [_compare(s, by_key.get(s.key), records, tolerance) for s in all_scopes], notes
        # Bisection over graph prefixes: the scopes in graph order, a probe compiles the program cut at one scope's
        # output; a value that diverged stays diverged downstream, so the first diverging scope is found in
        # log2(len) probes.
        probes: dict[int, Check] = {}
        lo, hi = 0, len(usable)
        while lo < hi:
            mid = (lo + hi) // 2
            s = usable[mid]
            log(f"bisecting: probe {len(probes) + 1}, {s.path} (call {s.call})")
            package, n = _debug_package(program, flat, [s.outputs[0].name], work, f"probe{mid}")
            outs = _core.run_aoti_package(str(package), _tensors(flat), device)
            probes[mid] = _compare(s, outs[n], records, tolerance)
            if probes[mid].ok:
                lo = mid + 1
            else:
                hi = mid
        notes.append(f"bisection over {len(usable)} scope outputs: {len(probes)} probe packages compiled")
        return [probes[i] for i in sorted(probes)], notes


def localize(corpus_dir: Path, case: str, *, variant: str | None = None, sets: list[str] | None = None,
             aoti: bool = False, method: str = "mark", device: str = "cpu", aoti_cache: Path | None = None,
             log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    from ..safeload import load_exported_program
    from ..writing.aoti import default_cache, package_path
    from ..writing.aoti_build import register_stand_ins

    corpus = _core.Corpus.open(str(corpus_dir))
    found = [c for c in corpus.cases if c.name == case]
    if not found:
        raise UsageError(f"no case named {case!r} in {corpus_dir}")
    c = found[0]
    if c.error:
        raise CorpusInputError(f"{case}: {c.error}")
    programs = [v for v in c.variants if v.kind == "exported_program" and v.file]
    if variant:
        programs = [v for v in programs if v.name == variant]
    if not programs:
        named = " named " + repr(variant) if variant else ""
        raise CorpusInputError(f"{case}: no torch.export program{named} with a file")
    v = programs[0]
    # Through the core's checked reader (a regular file inside the corpus, its declared size and SHA-256, read once).
    data = _core.read_case_file(corpus, case, v.file)
    register_stand_ins(v.pytree_types, f"{case}/{v.file}")
    try:
        program = load_exported_program(io.BytesIO(data), f"{case}/{v.file}")
    except ValueError:  # UnsafeFile: says which record and why
        raise
    except Exception as e:  # noqa: BLE001 - a damaged or too-new program: which and why, no traceback
        raise CorpusInputError(f"{case}/{v.file}: torch.export.load cannot read it: {type(e).__name__}: "
                               f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
    manifest = json.loads(c.manifest_json)
    tolerance = {"default": manifest["tolerance"]["default"], "outputs": {}}
    keywords = {s.name: list(s.keywords) for s in c.input_sets}
    chosen = [s for s in v.input_sets if not sets or s in sets]
    if sets and len(chosen) != len(set(sets)):
        raise UsageError(f"{case}:{v.name}: runs on {v.input_sets}, not on all of {sets}")
    if not sets:  # every set that has records (generated sets have none: docs/coverage.md); --set names one anyway
        unrecorded = {x["name"]: x["submodules_skipped"] for x in manifest["input_sets"]
                      if "submodules_skipped" in x}
        for name in [n for n in chosen if n in unrecorded]:
            log(f"{case}:{v.name}/{name}: skipped, no submodule records ({unrecorded[name]})")
        chosen = [n for n in chosen if n not in unrecorded]
    cache = Path(aoti_cache) if aoti_cache else default_cache()
    out: dict[str, Any] = {"case": case, "variant": v.name, "sets": []}
    for name in chosen:
        entry: dict[str, Any] = {"input_set": name}
        # The runner's own rule decides whether the set may be passed to the program at all (its structure and
        # guards): a set outside them is not run, as the runner does not run it.
        problem = _core.program_call_problem(corpus, case, v.name, name)
        if problem:
            entry["not_run"] = problem
            out["sets"].append(entry)
            continue
        args, golden = _core.load_set(corpus, case, name)
        records = _records(corpus, case, name)
        log(f"{case}:{v.name}/{name}: fx.Interpreter against the eager records")
        checks = fx_checks(program, tuple(args), keywords[name], records, tolerance)
        entry["fx"] = [k.as_dict() for k in checks]
        entry["fx_first_divergence"] = next((f"{k.path} (call {k.call}, node {k.node})" for k in checks
                                             if k.compared and not k.ok), "")
        if aoti:
            pkg = package_path(cache, _core.program_key(corpus, case, v.name), device)
            checks, notes = aoti_checks(program, tuple(args), keywords[name], records, tolerance, golden, pkg,
                                        device, method, log)
            entry["aoti"] = [k.as_dict() for k in checks]
            entry["aoti_notes"] = notes
            entry["aoti_first_divergence"] = next((f"{k.path} (call {k.call}, node {k.node})" for k in checks
                                                   if k.compared and not k.ok), "")
        out["sets"].append(entry)
    return out


def render(result: dict[str, Any]) -> str:
    """The result for a terminal: every piece of corpus text (submodule paths from the program's nn_module_stack,
    node names, messages) escaped."""
    lines = []
    for s in result["sets"]:
        head = f"{result['case']}:{result['variant']}/{s['input_set']}"
        if "not_run" in s:
            lines.append(terminal(f"{head} NOT RUN: {s['not_run']}"))
            continue
        for side in ("fx", "aoti"):
            if side not in s:
                continue
            checks = s[side]
            compared = sum(k["compared"] for k in checks)
            diverging = sum(k["compared"] and not k["ok"] for k in checks)
            first = s[f"{side}_first_divergence"]
            lines.append(terminal(f"{head} [{side}] {compared} of {len(checks)} submodule outputs compared with "
                                  f"eager, {diverging} diverge; first: {first or 'none'}"))
            for note in s.get(f"{side}_notes", []):
                lines.append("  | " + terminal(note))
            for k in checks:
                if k["compared"] and k["ok"]:
                    continue
                what = k["summary"] if k["compared"] else "not compared: " + k["why_not"]
                lines.append("  | " + terminal(f"{k['path']} (call {k['call']}"
                                               f"{', node ' + k['node'] if k['node'] else ''}): {what}"))
    return "\n".join(lines) + "\n"
