"""The dtypes a corpus holds: their names, and torch.testing.assert_close's default tolerances, which the "allclose"
mode uses where a case gives none. Shared by every layer (authoring names a program's input dtypes, writing stores
values, tools judge them); the core has the same tables (dtype_name and default_rtol_atol in compare.cpp) and the
corpus schema the same enum, and test_cross_language.py keeps the three equal. They exist in Python too because the
exporter runs in interpreters without the core.
"""

from __future__ import annotations

import torch

DTYPE_NAMES = {
    torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32", torch.float64: "float64",
    torch.complex64: "complex64", torch.complex128: "complex128", torch.uint8: "uint8", torch.int8: "int8",
    torch.int16: "int16", torch.int32: "int32", torch.int64: "int64", torch.bool: "bool",
}


def dtype_name(dtype: torch.dtype) -> str:
    """A dtype's name as the corpus writes it ("float32"); one a corpus cannot hold, as torch spells it."""
    return DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


DEFAULT_RTOL_ATOL = {torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5),
                     torch.float64: (1e-7, 1e-7), torch.complex64: (1.3e-6, 1e-5), torch.complex128: (1e-7, 1e-7)}
