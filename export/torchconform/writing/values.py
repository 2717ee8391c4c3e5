"""Nested values as the corpus stores them: tensors, tuples, lists, str-keyed dicts, None, bool, int, float, str
(namedtuples are stored as tuples, OrderedDicts and dataclasses as dicts, any other class registered with
torch.utils._pytree.register_pytree_node, such as transformers' DynamicCache, as the dict of its named children)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..dtypes import DTYPE_NAMES, dtype_name


class UnstorableValue(TypeError):
    """A value the corpus cannot hold (a dtype or container type the C++ reader does not rebuild)."""


def freeze(value: Any, where: str = "$") -> Any:
    """A copy that owns compact storage (a view would drag its whole base storage into the file), with the
    container types checked: anything the C++ reader cannot rebuild is refused here, not discovered there."""
    if isinstance(value, torch.Tensor):
        if value.dtype not in DTYPE_NAMES:
            raise UnstorableValue(f"{where}: unsupported dtype {value.dtype}")
        return value.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    if isinstance(value, tuple):
        return tuple(freeze(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, list):
        return [freeze(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if type(value) is not dict:  # OrderedDict and friends do not load in every LibTorch (pytorch#100741)
            value = dict(value)
        for k in value:
            if not isinstance(k, str):
                raise UnstorableValue(f"{where}: dict keys must be str, got {type(k).__name__}")
        return {k: freeze(v, f"{where}[{k!r}]") for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # e.g. a model output registered with torch.export.register_dataclass: stored as the dict of its fields,
        # which is how the runner rebuilds it from an exported program's output spec
        return {f.name: freeze(getattr(value, f.name), f"{where}.{f.name}") for f in dataclasses.fields(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    node = registered_node(value)
    if node is not None:  # stored as its children, named as the runner names them from the program's spec
        children, names = node
        return {n: freeze(c, f"{where}.{n}") for n, c in zip(names, children)}
    raise UnstorableValue(f"{where}: cannot store a value of type {type(value).__name__} in a corpus")


def registered_node(value: Any) -> tuple[list[Any], list[str]] | None:
    """For an instance of a class registered with torch.utils._pytree (and not one of the containers above): its
    children and their names, or None. The names follow the rule the core applies to the program's serialized output
    spec (program_spec.cpp, node_child_names): the serialized context when it is a list of distinct strings, one per
    child (a dict-like node's keys); or, when the context is a list that starts with such a list, that list (a node
    that keeps more beside its children's names: transformers' DynamicCache serializes [["key_cache", "value_cache"],
    layout]); else the positions "0", "1", ..."""
    import json

    from torch.utils import _pytree as pytree

    node = pytree.SUPPORTED_NODES.get(type(value))
    if node is None:
        return None
    children, context = node.flatten_fn(value)
    children = list(children)
    serializer = pytree.SUPPORTED_SERIALIZED_TYPES.get(type(value))
    try:
        dumped = (serializer.to_dumpable_context(context) if serializer is not None and serializer.to_dumpable_context
                  else json.dumps(context, cls=pytree.EnumEncoder))
        context = json.loads(dumped) if isinstance(dumped, str) else dumped
    except (TypeError, ValueError):
        context = None
    def child_names(candidate: Any) -> list[str] | None:
        names = list(candidate) if isinstance(candidate, list) else []
        ok = len(names) == len(children) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)
        return names if ok else None

    names = child_names(context)
    if names is None and isinstance(context, list) and context:
        names = child_names(context[0])
    return children, names if names is not None else [str(i) for i in range(len(children))]


def describe(value: Any) -> str:
    """A short, human readable type-and-shape signature, e.g. ``(Tensor[2,12,32] float32, bool True)``."""
    if isinstance(value, torch.Tensor):
        return f"Tensor[{','.join(str(s) for s in value.shape)}] {dtype_name(value.dtype)}"
    if isinstance(value, tuple):
        return "(" + ", ".join(describe(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        if value and all(type(v) is int for v in value):
            return f"List[int] {value}"
        return "[" + ", ".join(describe(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "None"
    return f"{type(value).__name__} {value!r}"


def leaves(value: Any) -> list[Any]:
    """The non-container values of a nested value, depth first (dict values in insertion order)."""
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in leaves(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in leaves(v)]
    return [value]


def max_abs_diff(a: Any, b: Any) -> float | None:
    """The largest absolute difference between two nested values of the same structure (ints and bools compared as
    numbers); None when the structures, shapes or kinds differ. For the manifests' records, never for verdicts (those
    are the core's comparator's): the writer also runs inside other PyTorch versions (``compat --reexport``), where
    the compiled core is absent."""
    la, lb = leaves(a), leaves(b)
    if len(la) != len(lb):
        return None
    worst = 0.0
    for x, y in zip(la, lb):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape:
                return None
            if x.numel():
                worst = max(worst, float((x.double() - y.double()).abs().max()))
        elif isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return None
        elif isinstance(x, (int, float)) and isinstance(y, (int, float)):
            worst = max(worst, abs(float(x) - float(y)))
        elif x != y:
            return None
    return worst


def degenerate(value: Any, policy: dict[str, Any], sensitivity: float = 0.01) -> list[str]:
    """Why a golden would check little or nothing, per floating leaf: an empty tensor (nothing is compared), a
    constant one (all elements equal: a runtime that returns that constant, e.g. a zero-initialised head's zeros,
    passes), one whose every |value| is within the absolute tolerance (a runtime returning zeros passes), or one whose
    tolerance accepts more than ``sensitivity`` of relative error on most elements (logits of at most 4.7e-5 under
    atol 1e-5: an output 20% wrong everywhere passes).
    ``policy``: the case's tolerance (``{"default", "outputs"}``). The core judges it (``LeafReport.weak``), as the
    runner does on every result: the export's warning and the verification's mark are one rule. Under another
    PyTorch's interpreter (a re-export by ``torchconform upgrade``) the core is absent: nothing is recorded at export,
    and the runner still marks such goldens when it verifies them."""
    from .. import _core

    if _core is None:
        return []
    return [f"{leaf.path}: {leaf.weak}" for leaf in _core.compare(value, value, policy, sensitivity=sensitivity).leaves
            if leaf.weak]
