"""torchconform: prove that PyTorch models exported in Python give the same answers when LibTorch reloads them."""

from __future__ import annotations

import torch  # noqa: F401  (libtorch must be loaded before any compiled part of the package)

from .registry import Built, Call, Case, CaseError, InputSet, register, select

__all__ = ["Built", "Call", "Case", "CaseError", "InputSet", "register", "select"]
__version__ = "0.1.0"
