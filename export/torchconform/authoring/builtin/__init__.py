"""The built-in cases: every TorchScript model of the spec, exported the right way, with its hazards recorded; one
file per model, each with its ``CASES``.

Common rules (see docs/corpus-format.md): ``build(seed)`` runs after ``torch.manual_seed(seed)`` (parameter init draws
from the global generator) and draws its inputs from ``torch.Generator().manual_seed(seed + 1)``; models are in eval
mode; tracing runs under ``torch.no_grad()``; every case is checked on input sets other than its trace example.
"""

from __future__ import annotations

from ..case import Case


def builtin_cases() -> list[Case]:
    """The built-in cases, in corpus order (imported on first use: building them needs torch.jit and torch.export)."""
    from . import dynamic_router, full_model, process_outputs, simple_cnn

    return [*simple_cnn.CASES, *dynamic_router.CASES, *full_model.CASES, *process_outputs.CASES]
