"""A case's extra artifacts: the spec's TorchScript optimizations and torch.export programs.

A *variant* is another artifact of the same model, checked on (some of) the case's input sets against the same eager
goldens and, call by call, against the case's unoptimized TorchScript artifact. Two kinds exist:

- ``torchscript``: ``torch.jit.freeze``, ``torch.jit.optimize_for_inference`` and the explicit passes of the spec
  (inline, constant propagation, fuse_linear), each applied to a fresh copy of the artifact;
- ``exported_program``: a ``torch.export`` program (``.pt2``), run in C++ through an AOTInductor package compiled from
  it (``aoti.py``: a build output, cached, never committed) and, where the LibTorch has it, NativeRT.

Where ``torch.export`` cannot capture a model the variant records the error as a strict expected failure: the
exporter refuses to write the corpus if the capture starts working while the mark is still there.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..dtypes import dtype_name
from .case import CaseError

Kind = Literal["torchscript", "exported_program"]

# torch.export arrived in PyTorch 2.1; exporting with an older torch (torchconform compat) records every capture as
# an expected failure that says so, instead of failing the export.
HAS_EXPORT = hasattr(torch, "export") and hasattr(torch.export, "export")


@dataclass
class Variant:
    name: str
    kind: Kind
    description: str
    transform: str  # the code that made it from the case's model or artifact
    artifact: Any = None  # a ScriptModule / ExportedProgram; None when the capture failed (see ``error``)
    input_sets: list[str] | None = None  # the sets it applies to; None: every set of the case
    tolerance: dict[str, Any] | None = None  # None: the case's tolerance
    xfail: str | dict[str, str] | None = None  # expected to fail (strict): the reason, or {"reason", "torch"}
    error: str | None = None  # why the capture failed
    findings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # AOTInductor returns Python ints (e.g. from .item()) as 0-dim int64 tensors; when set, the runner converts them
    # back before comparing, and says so. Never implied: a program that returns ints must declare it.
    int_outputs_as_tensors: bool = False
    # exported_program: AOTInductor's options for its package (api.Export.aoti_options)
    aoti_options: dict[str, Any] = field(default_factory=dict)


def script_copy(artifact: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """An independent copy (save + load): the spec's passes mutate graphs in place, and the shipped artifact must
    stay what it was."""
    buf = io.BytesIO()
    torch.jit.save(artifact, buf)
    buf.seek(0)
    return torch.jit.load(buf)


def graph_node_counts(artifact: Any) -> dict[str, int]:
    """Node kind -> count: the inlined TorchScript graph (blocks included), or an exported program's graph."""
    counts: Counter[str] = Counter()
    if HAS_EXPORT and isinstance(artifact, torch.export.ExportedProgram):
        for node in artifact.graph.nodes:
            if node.op == "call_function":
                counts[str(node.target)] += 1
        return dict(sorted(counts.items()))
    graph = artifact.inlined_graph if isinstance(artifact, torch.jit.ScriptModule) else artifact.graph

    def walk(block: Any) -> None:
        for node in block.nodes():
            counts[node.kind()] += 1
            for b in node.blocks():
                walk(b)

    walk(graph)
    return dict(sorted(counts.items()))


# Namespaces every LibTorch registers itself; any other one an artifact calls comes from a library (torchvision's
# torchvision::nms, a user's TORCH_LIBRARY) that the runner must load before the artifact can run.
LIBTORCH_NAMESPACES = frozenset({
    "aten", "prim", "prims", "quantized", "_quantized", "prepacked", "mkldnn", "mkldnn_prepacked", "onednn",
    "profiler", "cuda", "_caffe2", "tensorexpr", "static_runtime", "inductor", "higher_order", "quantized_decomposed",
    "_c10d_functional", "c10d", "_dtensor", "xnnpack", "sparse", "fbgemm", "_test", "debugprims", "rngprims"})


def operator_namespaces(artifact: Any) -> set[str]:
    """The operator namespaces outside LibTorch's that a TorchScript artifact (every method of every submodule, or a
    scripted function) or an exported program calls."""
    kinds: set[str] = set()
    if HAS_EXPORT and isinstance(artifact, torch.export.ExportedProgram):
        for node in artifact.graph.nodes:
            if node.op == "call_function" and hasattr(node.target, "namespace"):
                kinds.add(f"{node.target.namespace}::")
    else:
        def walk(block: Any) -> None:
            for node in block.nodes():
                kinds.add(node.kind())
                for b in node.blocks():
                    walk(b)

        # inlined graphs: an operator called from a scripted helper function (torchvision's batched_nms calls
        # torchvision::nms) sits behind a prim::CallFunction in the method's own graph
        if isinstance(artifact, torch.jit.ScriptModule):
            for module in artifact.modules():
                for name in module._c._method_names():
                    method = module._c._get_method(name)
                    walk(getattr(method, "inlined_graph", None) or method.graph)
        elif hasattr(artifact, "graph"):
            walk(getattr(artifact, "inlined_graph", None) or artifact.graph)
    return {k.split("::")[0] for k in kinds if "::" in k} - LIBTORCH_NAMESPACES


def torchscript_variants(artifact: torch.jit.ScriptModule, *, xfail: dict[str, Any] | None = None,
                         tolerance: dict[str, dict[str, Any]] | None = None) -> list[Variant]:
    """freeze, optimize_for_inference and the spec's explicit passes, each on its own copy of ``artifact``.
    ``xfail`` / ``tolerance`` map a variant name to its expected-failure reason / tolerance policy."""
    xfail, tolerance = xfail or {}, tolerance or {}

    frozen = torch.jit.freeze(script_copy(artifact))
    optimized = torch.jit.optimize_for_inference(script_copy(artifact))
    passes = script_copy(artifact)
    graph = passes.graph  # the forward graph, changed in place as the spec does it on `traced.graph`
    torch._C._jit_pass_inline(graph)
    torch._C._jit_pass_constant_propagation(graph)
    torch._C._jit_pass_fuse_linear(graph)

    out = [
        Variant("frozen", "torchscript", "parameters folded into the graph as constants", "torch.jit.freeze(artifact)",
                frozen),
        Variant("optimized", "torchscript", "freeze plus the inference passes (on CPU: conv/linear to MKLDNN, "
                "conv-bn folding...)", "torch.jit.optimize_for_inference(artifact)", optimized),
        Variant("passes", "torchscript", "the spec's explicit passes on the forward graph",
                "g = artifact.graph; torch._C._jit_pass_inline(g); torch._C._jit_pass_constant_propagation(g); "
                "torch._C._jit_pass_fuse_linear(g)", passes,
                findings=["The spec runs the passes on `traced.graph` of the module it ships, changing it in place; "
                          "here they run on a reloaded copy so the shipped artifact stays as traced."]),
    ]
    for v in out:
        v.xfail = xfail.pop(v.name, None)
        v.tolerance = tolerance.pop(v.name, None)
    if xfail or tolerance:
        raise CaseError(f"unknown TorchScript variant(s) {sorted({*xfail, *tolerance})} (known: frozen, optimized, "
                        f"passes)")
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


def _raised_at(e: BaseException) -> str | None:
    """torch.export names the user line that failed ("The following call raised this error: File ..., line N")."""
    lines = str(e).splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("File ") and i + 1 < len(lines) and "torchconform" in line:
            where = line.strip().split(", in ")[-1]
            return f"{where}: {lines[i + 1].strip()}"
    return None


def capture(name: str, module: torch.nn.Module, args: tuple[Any, ...], dynamic_shapes: Any, *, description: str,
            input_sets: list[str] | None = None, expect_failure: str | None = None,
            int_outputs_as_tensors: bool = False, findings: list[str] | None = None,
            kwargs: dict[str, Any] | None = None) -> Variant:
    """``torch.export.export(module, args, dynamic_shapes=...)`` in eval mode without grad.

    With ``expect_failure`` (the reason), a failing capture is recorded as a strict expected failure, and a capture
    that succeeds raises: the mark is stale and must be removed. Without it, a failing capture raises."""
    transform = f"torch.export.export({type(module).__name__}, args, dynamic_shapes={dynamic_shapes!r})"
    module.eval()
    if not HAS_EXPORT:
        reason = f"torch {torch.__version__} has no torch.export (added in PyTorch 2.1)"
        return Variant(name, "exported_program", description, transform, None, input_sets, xfail=reason,
                       error=reason, findings=list(findings or []))
    try:
        with torch.no_grad(), _torch_logs_collected() as logs:
            program = torch.export.export(module, args, kwargs=kwargs or None, dynamic_shapes=dynamic_shapes)
    except Exception as e:  # noqa: BLE001 - the failure is the finding
        if expect_failure is None:
            detail = "\n  ".join(line for line in str(e).strip().splitlines()[1:6] if line.strip())
            raise CaseError(f"torch.export of variant {name!r} failed: {_first_line(e)}"
                            + (f"\n  {detail}" if detail else "")) from e
        raised_at = _raised_at(e)
        details: dict[str, Any] = {"raised_at": raised_at} if raised_at else {}
        if logs:
            details["torch_log"] = logs[:5]
        return Variant(name, "exported_program", description, transform, None, input_sets, xfail=expect_failure,
                       error=_first_line(e), findings=list(findings or []), details=details)
    _relative_stack_traces(program)
    if expect_failure is not None:
        raise CaseError(f"XPASS: torch.export now captures variant {name!r}, which is marked as an expected failure "
                        f"({expect_failure}); remove the mark")
    return Variant(name, "exported_program", description, transform, program, input_sets,
                   findings=list(findings or []), int_outputs_as_tensors=int_outputs_as_tensors,
                   details=program_details(program))


_ABS_PATH = re.compile(r"/[^\"'\s,]*?/(site-packages|export/torchconform)/")
_OTHER_ABS_FILE = re.compile(r'(File ")/(?:[^"\n]*/)?([^"/\n]*")')  # a user's cases file, wherever it lives


def _relative_stack_traces(program: torch.export.ExportedProgram) -> None:
    """Nodes keep the Python stack that made them, with absolute paths of the exporting checkout and environment;
    saved as is they would make the program's bytes (and so its hash and its AOTInductor cache key) depend on where
    the export ran, and disclose those paths. Keep them relative to site-packages/ or the package instead, and any
    other file (a user's cases file) by its name alone: ``<...>/my_cases.py``."""
    for node in program.graph.nodes:
        trace = node.meta.get("stack_trace")
        if isinstance(trace, str):
            node.meta["stack_trace"] = _OTHER_ABS_FILE.sub(r"\1<...>/\2", _ABS_PATH.sub(r"<\1>/", trace))


def program_details(program: torch.export.ExportedProgram) -> dict[str, Any]:
    """What a reader needs to know about a captured program: its input shapes (symbolic where dynamic), the ranges of
    its symbols, the constants it specialized on, and what it returns."""
    inputs, specialized = [], []
    for spec in program.graph_signature.input_specs:
        if spec.kind.name != "USER_INPUT":
            continue
        arg = spec.arg
        if hasattr(arg, "name") and type(arg).__name__ == "TensorArgument":
            inputs.append(arg.name)
        else:
            specialized.append(f"{getattr(arg, 'name', '?')}={getattr(arg, 'value', arg)!r}")
    shapes = {}
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in inputs:
            val = node.meta.get("val")
            shapes[node.name] = str(list(val.shape)) if val is not None else "?"
    outputs = []
    for node in program.graph.nodes:
        if node.op == "output":
            for v in node.args[0]:
                val = getattr(v, "meta", {}).get("val")
                outputs.append(f"Tensor{list(val.shape)} {dtype_name(val.dtype)}"
                               if isinstance(val, torch.Tensor) else type(val).__name__ if val is not None else "?")
    return {
        "input_shapes": shapes,
        "range_constraints": {str(k): [_bound(v.lower), _bound(v.upper)]
                              for k, v in program.range_constraints.items()},
        "specialized_inputs": specialized,
        "outputs": outputs,
        "out_spec": str(program.call_spec.out_spec).replace("\n", " "),
    }


def _bound(x: Any) -> int | None:
    try:
        return int(x)
    except (TypeError, ValueError, AttributeError):  # sympy's (int_)oo: unbounded
        return None


@contextlib.contextmanager
def _torch_logs_collected() -> Iterator[list[str]]:
    """torch.export logs warnings and prints the partial graph of a failed capture to stderr (pages of it): keep the
    first line of each log message, and the graph, for the manifest instead of flooding the export's output."""
    logger = logging.getLogger("torch")
    collected: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(record.getMessage().strip().splitlines()[0][:300] if record.getMessage().strip() else "")

    saved = logger.handlers[:], logger.propagate
    logger.handlers = [Collect(logging.WARNING)]
    logger.propagate = False
    printed = io.StringIO()  # a failed capture also print()s its partial graph to stderr
    try:
        with contextlib.redirect_stderr(printed):
            yield collected
    finally:
        logger.handlers, logger.propagate = saved
        graph = []
        for line in printed.getvalue().splitlines():
            if line.startswith("def forward") and graph:
                break  # the graph is printed more than once
            if line.strip() and not line.strip().startswith("#"):
                graph.append(line.rstrip())
        if graph:
            collected.append("partial graph printed by torch.export:\n" + "\n".join(graph[:40]))


def program_input_leaves(program: torch.export.ExportedProgram, args: tuple[Any, ...], kwargs: dict[str, Any],
                         what: str) -> list[Any]:
    """An input set's leaves in the order the program takes them: its positional arguments flattened by the program's
    own input spec (tuples and lists by position, dicts by the keys the program was captured with, in that order),
    which is how the runner flattens them too. Raises CaseError naming ``what`` when the set has another structure."""
    spec = program.call_spec.in_spec
    try:
        return spec.flatten_up_to((tuple(args), dict(kwargs)))
    except Exception as e:  # noqa: BLE001 - pytree says which node differs
        raise CaseError(f"{what}: the input set's structure is not the one the program was captured with "
                        f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from e


def program_inputs(program: torch.export.ExportedProgram, leaves: list[Any]) -> list[dict[str, Any]]:
    """The manifest's ``inputs``: per leaf, ``{"kind": "tensor", "dtype", "shape"}`` or ``{"kind": "const",
    "value"}`` (a constant the program was specialized on). ``shape`` holds the program's guards on that tensor: an
    int for a static dimension, ``{"symbol", "min", "max"}`` for a dynamic one (``max`` null when unbounded; one symbol
    on several dimensions means they must be equal), ``{"expr"}`` for a derived one. The runner refuses a call that
    breaks them: AOTInductor's code does not check its inputs and reads out of bounds."""
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    user = [spec.arg for spec in program.graph_signature.input_specs if spec.kind.name == "USER_INPUT"]
    out: list[dict[str, Any]] = []
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, torch.Tensor):
            out.append({"kind": "const", "value": leaf})
            continue
        entry: dict[str, Any] = {"kind": "tensor"}
        node = placeholders.get(getattr(user[i], "name", "")) if i < len(user) else None
        val = node.meta.get("val") if node is not None else None
        if isinstance(val, torch.Tensor):
            entry["dtype"] = dtype_name(val.dtype)
            entry["shape"] = [_dim(d, program.range_constraints) for d in val.shape]
        out.append(entry)
    return out


def _dim(d: Any, ranges: dict[Any, Any]) -> Any:
    if isinstance(d, int):
        return d
    expr = d.node.expr
    if getattr(expr, "is_Symbol", False):
        r = ranges.get(expr)
        return {"symbol": str(expr), "min": _bound(r.lower) if r is not None else 0,
                "max": _bound(r.upper) if r is not None else None}
    if getattr(expr, "is_Integer", False):
        return int(expr)
    return {"expr": str(expr)}


def user_pytree_types(program: torch.export.ExportedProgram) -> list[dict[str, Any]]:
    """The user containers in the program's input and output specs, by the name its file serializes them under:
    namedtuples (``{"name", "kind": "namedtuple", "fields"}``), registered dataclasses (``"dataclass"``, with the
    fields that may be None), registered dict subclasses whose context is their keys (``"mapping"``: transformers'
    ModelOutput; ``fields`` are the keys seen) and any other registered class (``"node"``: transformers'
    DynamicCache). ``torchconform compile`` registers structural stand-ins for them (no code from the corpus runs),
    and the runner rebuilds a namedtuple as a tuple, a dataclass, a mapping or a node (its children, named as
    ``values.registered_node`` names them) as a str-keyed dict."""
    from torch.utils import _pytree as pytree

    found: dict[str, dict[str, Any]] = {}

    def walk(spec: Any) -> None:
        if spec.type is pytree.namedtuple and pytree.is_namedtuple_class(spec.context):
            cls = spec.context
            node = pytree.SUPPORTED_SERIALIZED_TYPES.get(cls)
            name = node.serialized_type_name if node is not None else None
            if name is None or name == pytree.NO_SERIALIZED_TYPE_NAME_FOUND:
                name = f"{cls.__module__}.{cls.__qualname__}"
                pytree._register_namedtuple(cls, serialized_type_name=name)  # what torch.export.save needs
            found[name] = {"name": name, "kind": "namedtuple", "fields": list(cls._fields)}
        elif isinstance(spec.type, type) and issubclass(spec.type, dict) and spec.type not in (dict, OrderedDict):
            # e.g. transformers' ModelOutput (an OrderedDict registered with its keys as the context)
            node = pytree.SUPPORTED_SERIALIZED_TYPES.get(spec.type)
            name = node.serialized_type_name if node is not None else f"{spec.type.__module__}.{spec.type.__qualname__}"
            fields = sorted({*found.get(name, {}).get("fields", []), *map(str, spec.context)})
            found[name] = {"name": name, "kind": "mapping", "fields": fields}
        elif dataclasses.is_dataclass(spec.type):
            node = pytree.SUPPORTED_SERIALIZED_TYPES.get(spec.type)
            name = node.serialized_type_name if node is not None else f"{spec.type.__module__}.{spec.type.__qualname__}"
            fields, none_fields = spec.context
            found[name] = {"name": name, "kind": "dataclass", "fields": list(fields), "none_fields": list(none_fields)}
        elif (isinstance(spec.type, type) and not issubclass(spec.type, (tuple, list, dict, collections.deque))
              and spec.type in pytree.SUPPORTED_NODES):
            # any other registered class (transformers' DynamicCache): stored and rebuilt as its named children
            node = pytree.SUPPORTED_SERIALIZED_TYPES.get(spec.type)
            name = node.serialized_type_name if node is not None else pytree.NO_SERIALIZED_TYPE_NAME_FOUND
            if name == pytree.NO_SERIALIZED_TYPE_NAME_FOUND:
                raise CaseError(f"{spec.type.__module__}.{spec.type.__qualname__} is registered with "
                                "torch.utils._pytree without a serialized_type_name, so torch.export.save cannot "
                                "write the program: register it with serialized_type_name=...")
            found[name] = {"name": name, "kind": "node", "fields": []}  # (names come from each spec's context)
        for child in spec.children() if hasattr(spec, "children") else spec.children_specs:
            walk(child)

    walk(program.call_spec.in_spec)
    walk(program.call_spec.out_spec)
    return sorted(found.values(), key=lambda t: t["name"])
