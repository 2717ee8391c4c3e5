"""Validation against docs/corpus-schema.json from Python, with no validator of our own: the C++ core's (the one the
runner uses, compiled with the schema text) where the core is there, a standard JSON Schema validator (jsonschema,
draft 7) where it is not (another PyTorch's interpreter exporting under ``torchconform compat --reexport``).
tests/python/test_schema.py runs both on the schema's own examples and on keyword cases and checks they agree."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def _root() -> dict[str, Any]:
    from . import _core

    if _core is None:  # the same file the core compiles in
        return json.loads((Path(__file__).resolve().parents[2] / "docs" / "corpus-schema.json").read_text())
    return json.loads(_core.corpus_schema())


def validate(definition: str, value: Any) -> str:
    """'' when ``value`` satisfies the schema definition ('manifest', 'corpus', 'policy'...), else the first problem
    as '<json path>: <what>' (the core's words; jsonschema's where the core is absent)."""
    from . import _core

    if _core is not None:
        return _core.validate(definition, json.dumps(value))
    return standard_validate({**_root(), "$ref": f"#/definitions/{definition}"}, value)


def standard_validate(schema: dict[str, Any], value: Any) -> str:
    """The first violation reported by jsonschema's draft-7 validator, as '<json path>: <message>', or ''."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(value))
    if error is None:
        return ""
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{path}: {error.message}"
