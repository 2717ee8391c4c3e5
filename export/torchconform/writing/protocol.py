"""The call protocol of an input set, for Python callers: the prelude's calls on the target, then for each checked
call the seed (if any) and the call of the set's method. The C++ runner follows the same steps in the same order
(run.cpp; a prelude runs once on a freshly loaded module), and tests/python/test_cross_language.py checks that both
give bitwise the same outputs. Pure torch and the standard library: the compat probe runs it inside other PyTorch
versions, where the compiled core is absent."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ..errors import CorpusInputError


def resolve_method(obj: Any, dotted: str) -> Any:
    """``decoder.set_temperature`` -> obj.decoder.set_temperature (works on nn.Module and ScriptModule alike)."""
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def apply_prelude(target: Any, prelude: Iterable[tuple[str, Sequence[Any]]]) -> None:
    for method, args in prelude:
        resolve_method(target, method)(*args)


def call(target: Any, method: str, args: Sequence[Any], seed: int | None,
         kwargs: dict[str, Any] | None = None) -> Any:
    """One checked call: the seed (if any), then ``method`` (forward: the target itself) on ``args`` and
    ``kwargs``."""
    if seed is not None:
        torch.manual_seed(seed)
    return (target if method == "forward" else resolve_method(target, method))(*args, **(kwargs or {}))


def split_keywords(values: Sequence[Any], keywords: Sequence[str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """An inputs file's values as (positional, keyword) arguments: the last ``len(keywords)`` are passed by keyword,
    under those names (the manifest's ``keywords``; the C++ runner splits them the same way)."""
    n = len(values) - len(keywords)
    if n < 0:
        raise CorpusInputError(f"the set names {len(keywords)} keyword arguments but holds {len(values)} values")
    return tuple(values[:n]), dict(zip(keywords, values[n:]))


def ints_from_tensors(value: Any) -> Any:
    """An exported program's 0-dim integer tensors as the Python ints they stand for (the manifest's
    ``int_outputs_as_tensors``; the C++ runner does the same when it rebuilds the program's outputs)."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
            and value.dtype != torch.bool:
        return int(value)
    if isinstance(value, (list, tuple)):
        return type(value)(ints_from_tensors(x) for x in value)
    return value
