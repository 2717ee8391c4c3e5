"""Per-submodule records for localising a mismatch (``torchconform-run`` replays them, cpp_runner/src/localize.cpp).

With ``record_submodules`` a case's input sets also store what every submodule of the eager model received and
returned while the golden was computed: forward pre-hooks copy the inputs *before* the call (an in-place op inside
would otherwise change them), forward hooks the output, in the order the calls complete (a child completes before
its parent, so the first diverging record is the innermost one). The runner feeds each submodule of the TorchScript
artifact the recorded eager inputs, so it measures that submodule's own error, not the error it inherits from
upstream (the Shadow approach of PyTorch's numeric suite).

A record is ``(path, call index, positional inputs tuple, keyword inputs dict, output)``. The runner passes a keyword
input by name where the artifact's method takes it, and drops a non-tensor one it does not take (tracing bakes those
in as constants: ``TransformerEncoder`` calls its layers with ``src_mask=None, is_causal=False``), saying so per call.
Calls that cannot be stored are left out and counted in the manifest: values the corpus cannot hold (the same rule
as for input sets).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from ..authoring.case import InputSet
from .values import UnstorableValue, freeze

# The records of one case, all sets together: past this the export fails with a message (record fewer sets, or
# raise the cap knowingly with TORCHCONFORM_RECORD_CAP_MB).
RECORD_CAP_BYTES = 64 << 20


def recordable(s: InputSet) -> str:
    """Why a set gets no records ("" when it does): a seeded set draws random numbers inside submodules, which a
    replay of one submodule cannot reproduce; a prelude changes module state the replay does not apply; a generated
    set is as large as a dimension's bound allows."""
    if s.seed is not None:
        return "a seeded set (random draws inside submodules do not replay)"
    if s.prelude:
        return "a set with a prelude (its state change is not replayed)"
    if s.generated is not None:  # large by design (a dimension's maximum): the written sets carry the records
        return "a generated set (docs/coverage.md: the written sets are recorded)"
    return ""


def record_calls(model: torch.nn.Module, run: Any) -> tuple[list[tuple[str, int, tuple, dict, Any]], list[str]]:
    """Calls ``run()`` (which runs ``model`` on one input set) with hooks on every submodule; returns the records in
    completion order and a note per call left out."""
    names = {id(m): n for n, m in model.named_modules() if n}
    records: list[tuple[str, int, tuple, dict, Any]] = []
    skipped: list[str] = []
    counts: Counter[str] = Counter()
    pending: dict[int, list[Any]] = {}
    skipped_script: list[str] = []

    def pre(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        try:
            frozen: Any = (freeze(tuple(args)), freeze(dict(kwargs)))
        except UnstorableValue as e:
            frozen = e
        pending.setdefault(id(module), []).append(frozen)

    def post(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        name = names[id(module)]
        call = counts[name]
        counts[name] += 1
        inputs = pending[id(module)].pop()
        if isinstance(inputs, UnstorableValue):
            skipped.append(f"{name} call {call}: inputs: {inputs}")
        else:
            try:
                records.append((name, call, *inputs, freeze(output)))
            except UnstorableValue as e:
                skipped.append(f"{name} call {call}: output: {e}")

    handles = []
    try:
        for n, m in model.named_modules():
            if isinstance(m, torch.jit.ScriptModule):  # compiled already: no Python hooks run inside it
                if not any(n.startswith(s + ".") for s in skipped_script):
                    skipped.append(f"{n or '(the model itself)'}: a TorchScript module inside the eager model (no "
                                   "hooks run in it)")
                    skipped_script.append(n)
            elif n:
                handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
                handles.append(m.register_forward_hook(post, with_kwargs=True))
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return records, skipped
