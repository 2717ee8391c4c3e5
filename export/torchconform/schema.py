"""Validation against docs/corpus-schema.json, the same subset of JSON Schema the C++ runner implements and with the
same messages. The schema text comes from the compiled core (``_core.corpus_schema()``), so Python and C++ cannot
drift apart."""

from __future__ import annotations

import json
import re
from functools import cache, lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _root() -> dict[str, Any]:
    from . import _core

    if _core is None:  # another PyTorch's interpreter on the source tree (torchconform compat): the same file
        from pathlib import Path

        return json.loads((Path(__file__).resolve().parents[2] / "docs" / "corpus-schema.json").read_text())
    return json.loads(_core.corpus_schema())


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("$", r"\Z") if pattern.endswith("$") else pattern)


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "unknown"


def _has_type(v: Any, t: str) -> bool:
    if t == "number":
        return _type_name(v) in ("integer", "number")
    return _type_name(v) == t


def _dump(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


# The keywords implemented here and in the C++ validator; a schema using another one is refused, not half-checked.
KEYWORDS = {"$schema", "$id", "title", "description", "definitions", "$ref", "type", "required", "properties",
            "additionalProperties", "items", "enum", "const", "minimum", "maximum", "pattern", "minLength",
            "maxLength", "minItems", "maxItems"}


def _check(schema: dict[str, Any], v: Any, path: str) -> str:
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"corpus schema uses keyword(s) {sorted(unknown)}, which are not implemented")
    if "$ref" in schema:
        return _check(_root()["definitions"][schema["$ref"].removeprefix("#/definitions/")], v, path)
    if "type" in schema:
        types = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        if not any(_has_type(v, t) for t in types):
            return f"{path}: expected {' or '.join(types)}, got {_type_name(v)}"
    if "const" in schema and not (v == schema["const"] and _type_name(v) == _type_name(schema["const"])):
        return f"{path}: must be {_dump(schema['const'])}, got {_dump(v)}"
    if "enum" in schema and not any(v == o and _type_name(v) == _type_name(o) for o in schema["enum"]):
        return f"{path}: {_dump(v)} is not one of {', '.join(_dump(o) for o in schema['enum'])}"
    if "minimum" in schema and _type_name(v) in ("integer", "number") and v < schema["minimum"]:
        return f"{path}: must be >= {_dump(schema['minimum'])}, got {_dump(v)}"
    if "maximum" in schema and _type_name(v) in ("integer", "number") and v > schema["maximum"]:
        return f"{path}: must be <= {_dump(schema['maximum'])}, got {_dump(v)}"
    if isinstance(v, str):
        if "maxLength" in schema and len(v) > schema["maxLength"]:
            return f"{path}: longer than {schema['maxLength']} characters"
        if "minLength" in schema and len(v) < schema["minLength"]:
            return f"{path}: shorter than {schema['minLength']} characters"
        # \Z, not $: Python's $ also matches before a final newline, ECMAScript's (and the C++ matcher's) does not.
        if "pattern" in schema and not re.search(_pattern(schema["pattern"]), v):
            return f"{path}: {_dump(v)} does not match {schema['pattern']}"
    if isinstance(v, dict):
        for k in schema.get("required", []):
            if k not in v:
                return f"{path}: missing required key '{k}'"
        props = schema.get("properties", {})
        for k, x in v.items():
            if k in props:
                if e := _check(props[k], x, f"{path}.{k}"):
                    return e
            elif "additionalProperties" in schema:
                extra = schema["additionalProperties"]
                if extra is False:
                    return f"{path}: unexpected key '{k}'"
                if isinstance(extra, dict) and (e := _check(extra, x, f"{path}.{k}")):
                    return e
    if isinstance(v, list) and "maxItems" in schema and len(v) > schema["maxItems"]:
        return f"{path}: more than {schema['maxItems']} items"
    if isinstance(v, list) and "minItems" in schema and len(v) < schema["minItems"]:
        return f"{path}: fewer than {schema['minItems']} items"
    if isinstance(v, list) and "items" in schema:
        for i, x in enumerate(v):
            if e := _check(schema["items"], x, f"{path}[{i}]"):
                return e
    return ""


def validate(definition: str, value: Any) -> str:
    """'' when ``value`` satisfies the schema definition ('manifest', 'corpus', 'policy'...), else the first
    problem as '<json path>: <what>' -- the message the C++ runner gives for the same value."""
    return _check(_root()["definitions"][definition], value, "$")
