"""What the built-in cases share."""

from __future__ import annotations

import torch

from ..variants import HAS_EXPORT

# Without torch.export (PyTorch < 2.1) the dims only name themselves in the recorded transform; see variants.capture.
Dim = torch.export.Dim if HAS_EXPORT else (lambda name, **bounds: name)
