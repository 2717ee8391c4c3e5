"""The corpus validators against the official JSON-Schema-Test-Suite (draft 7), for every keyword the corpus and report
schemas use (tests/data/json-schema-test-suite): the C++ validator (what the runner and `_core.validate` use) gives
the suite's verdict on every case it accepts and refuses, with a message saying which keyword or reference it does
not implement, every group it does not; the standard validator Python falls back to gives the suite's verdict on
every case."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import ROOT
from torchconform import _core
from torchconform.schema import standard_validate

SUITE = ROOT / "tests" / "data" / "json-schema-test-suite" / "draft7"
FILES = sorted(SUITE.glob("*.json"))

# What a refusal must say: which keyword or reference is not implemented. Anything else (a crash inside the
# validator, a JSON library error) is a defect, not a refusal.
REFUSAL = re.compile(r"is not implemented by this validator|unsupported \$ref .* is implemented|"
                     r"tuple validation is not implemented")


def keywords_used(schema: Any) -> set[str]:
    """Every keyword of a schema document, walking only into subschemas (names under `properties` and `definitions`
    are property names, not keywords)."""
    if not isinstance(schema, dict):
        return set()
    out = set(schema)
    for k in ("properties", "definitions"):
        for sub in schema.get(k, {}).values():
            out |= keywords_used(sub)
    for k in ("items", "additionalProperties"):
        out |= keywords_used(schema.get(k))
    return out


def core_verdict(schema: Any, data: Any) -> str:
    return _core.validate_with_schema(json.dumps(schema), json.dumps(data))


def run_suite(validate: Callable[[Any, Any], str]) -> tuple[int, list[str], list[str]]:
    """(cases agreeing with the suite, cases disagreeing, groups refused) over every vendored file."""
    agree, wrong, refused = 0, [], []
    for f in FILES:
        for group in json.loads(f.read_text()):
            for case in group["tests"]:
                try:
                    message = validate(group["schema"], case["data"])
                except Exception as e:  # noqa: BLE001 - a refusal is checked by the caller
                    refused.append(f"{f.stem}: {group['description']}: {e}")
                    break
                if (message == "") == case["valid"]:
                    agree += 1
                else:
                    wrong.append(f"{f.stem}: {group['description']}: {case['description']}: got {message!r}")
    return agree, wrong, refused


def test_suite_covers_every_keyword_the_schemas_use() -> None:
    used = set()
    for name in ("corpus-schema.json", "report-schema.json"):
        used |= keywords_used(json.loads((ROOT / "docs" / name).read_text()))
    annotations = {"$schema", "$id", "$comment", "title", "description"}
    assert {"type", "properties", "$ref", "pattern"} <= used, used  # the scan sees the schemas' keywords
    suite = {f.stem for f in FILES}
    uncovered = {k for k in used - annotations if k.lstrip("$") not in suite}
    assert uncovered == set(), f"keywords the schemas use with no suite file vendored: {sorted(uncovered)}"


def test_core_validator_agrees_with_the_suite_or_refuses() -> None:
    agree, wrong, refused = run_suite(core_verdict)
    assert wrong == [], "\n".join(wrong)
    bad = [r for r in refused if not REFUSAL.search(r)]
    assert bad == [], "refused without saying what is not implemented:\n" + "\n".join(bad)
    # every vendored file but definitions.json (one group: a remote $ref to the meta-schema) has groups the validator
    # judges; a validator that refused everything would pass the two checks above
    assert agree > 0
    for f in FILES:
        groups = len(json.loads(f.read_text()))
        refused_here = sum(1 for r in refused if r.split(":")[0] == f.stem)
        assert refused_here < groups or f.stem == "definitions", f"{f.stem}: every group refused"


def test_standard_validator_agrees_with_the_suite() -> None:
    agree, wrong, refused = run_suite(standard_validate)
    assert wrong == [] and refused == [], "\n".join(wrong + refused)
    assert agree > 0


@pytest.mark.parametrize("broken", ["always_valid", "ignores_min_items"])
def test_negative_control_a_lax_validator_disagrees_with_the_suite(broken: str) -> None:
    """The harness catches a validator that ignores a keyword (what the C++ validator's refusal rule prevents)."""
    def lax(schema: Any, data: Any) -> str:
        if broken == "always_valid":
            return ""
        if isinstance(schema, dict):
            schema = {k: v for k, v in schema.items() if k != "minItems"}
        return core_verdict(schema, data)
    _, wrong, _ = run_suite(lax)
    assert wrong, "a validator that ignores keywords agreed with the whole suite: the harness checks nothing"
    if broken == "ignores_min_items":
        assert all(w.startswith("minItems:") for w in wrong), wrong


def test_suite_files_are_the_vendored_commit() -> None:
    readme = (SUITE.parent / "README.md").read_text()
    assert re.search(r"\b[0-9a-f]{40}\b", readme), "the README must name the suite's commit"
    assert (SUITE.parent / "LICENSE").is_file()
    assert len(FILES) >= 15
    assert all(isinstance(json.loads(Path(f).read_text()), list) for f in FILES)
