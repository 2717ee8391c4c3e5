"""torchconform: prove that PyTorch models exported in Python give the same answers when LibTorch reloads them.

The export side (case registry, exporters, corpus writer) is Python; loading, running and comparing happen once, in
C++ (``torchconform._core``, the same library ``torchconform-run`` and the ctest suite use).
"""

from __future__ import annotations

import importlib.util

import torch  # noqa: F401  (libtorch must be loaded before the compiled module: it resolves against it)

if importlib.util.find_spec(__name__ + "._core") is not None:
    from . import _core
    from ._core import Comparison, Corpus, CorpusError, SetResult, UsageError, compare, run_case
else:
    # Another PyTorch's interpreter running the source tree (torchconform compat: compat_probe, export): the core is
    # compiled for one LibTorch and is absent there; exporting and the probe do not need it. A core that exists but
    # fails to load (undefined symbols...) still raises above.
    _core = None  # type: ignore[assignment]
from .api import Export, Inputs, XFail, case, declare
from .registry import Built, Call, Case, CaseError, InputSet, register, select

__all__ = [
    "Built", "Call", "Case", "CaseError", "Comparison", "Corpus", "CorpusError", "Export", "InputSet", "Inputs",
    "SetResult", "UsageError", "XFail", "case", "compare", "declare", "register", "run_case", "select", "_core",
]
__version__ = "0.1.0"
