"""torchconform: prove that PyTorch models exported in Python give the same answers when LibTorch reloads them.

The export side (case registry, exporters, corpus writer) is Python; loading, running and comparing happen once, in
C++ (``torchconform._core``, the same library ``torchconform-run`` and the ctest suite use).
"""

from __future__ import annotations

import importlib.metadata
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
from .authoring.api import Export, Inputs, Optimizations, XFail, case, declare
from .authoring.case import Built, Call, Case, CaseError, InputSet
from .authoring.registry import register, select

__all__ = [
    "Built", "Call", "Case", "CaseError", "Comparison", "Corpus", "CorpusError", "Export", "InputSet", "Inputs",
    "Optimizations", "SetResult", "UsageError", "XFail", "case", "compare", "declare", "register", "run_case",
    "select", "_core",
]
if _core is not None:
    __version__ = _core.__version__  # pyproject.toml's, compiled in (the one version string)
else:
    try:
        __version__ = importlib.metadata.version("torchconform")
    except importlib.metadata.PackageNotFoundError:  # the source tree on another interpreter's path (compat)
        __version__ = "unknown"
