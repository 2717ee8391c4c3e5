"""docs/corpus-schema.json: every golden file satisfies it; every violation is reported by the C++ validator (the one
Python calls too) with the message the tests pin, and refused as well by a standard validator (jsonschema, what
Python uses where the core is absent); both agree on keyword cases for every keyword the schema uses, and the C++
validator refuses a keyword it does not implement instead of ignoring it."""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import pytest

from conftest import GOLDEN, ROOT, manifests
from torchconform import _core
from torchconform.schema import standard_validate, validate

SCHEMA = json.loads((ROOT / "docs" / "corpus-schema.json").read_text())


def standard(definition: str, value: object) -> str:
    return standard_validate({**SCHEMA, "$ref": f"#/definitions/{definition}"}, value)


def test_schema_compiled_in_is_the_docs_file() -> None:
    assert json.loads(_core.corpus_schema()) == json.loads((ROOT / "docs" / "corpus-schema.json").read_text())


def test_golden_satisfies_the_schema() -> None:
    index = json.loads((GOLDEN / "corpus.json").read_text())
    assert validate("corpus", index) == "" == standard("corpus", index)
    for name, m in manifests().items():
        assert validate("manifest", m) == "", name
        assert standard("manifest", m) == "", name


def setitem(path: list[Any], value: Any) -> Callable[[dict], None]:
    def mutate(m: dict) -> None:
        node = m
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return mutate


def delitem(path: list[Any]) -> Callable[[dict], None]:
    def mutate(m: dict) -> None:
        node = m
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
    return mutate


RELPATH = json.loads((ROOT / "docs" / "corpus-schema.json").read_text())["definitions"]["relpath"]["pattern"]

MUTATIONS: list[tuple[str, Callable[[dict], None], str]] = [
    ("missing_case", delitem(["case"]), "$: missing required key 'case'"),
    ("case_not_str", setitem(["case"], 5), "$.case: expected string, got integer"),
    ("bad_mode", setitem(["mode"], "jit"),
     '$.mode: "jit" is not one of "trace", "script", "hybrid", "script_function", "export"'),
    ("format_version", setitem(["format_version"], 1), "$.format_version: must be 2, got 1"),
    ("typo_key", setitem(["tolerence"], {}), "$: unexpected key 'tolerence'"),
    ("tol_mode", setitem(["tolerance", "default", "mode"], "roughly"),
     '$.tolerance.default.mode: "roughly" is not one of "allclose", "ulp", "exact"'),
    ("tol_negative", setitem(["tolerance", "default", "atol"], -1), "$.tolerance.default.atol: must be >= 0, got -1"),
    ("tol_type", setitem(["tolerance", "default", "rtol"], "big"),
     "$.tolerance.default.rtol: expected number, got string"),
    ("tol_nan_flag", setitem(["tolerance", "default", "equal_nan"], "yes"),
     "$.tolerance.default.equal_nan: expected boolean, got string"),
    ("ulp_fraction", setitem(["tolerance", "outputs"], {"$[0]": {"mode": "ulp", "max_ulp": 1.5}}),
     "$.tolerance.outputs.$[0].max_ulp: expected integer, got number"),
    ("seed_str", setitem(["input_sets", 0, "seed"], "7"), "$.input_sets[0].seed: expected integer or null, got string"),
    ("seed_bool", setitem(["input_sets", 0, "seed"], True),
     "$.input_sets[0].seed: expected integer or null, got boolean"),
    ("sha_short", setitem(["input_sets", 0, "inputs", "sha256"], "abc"),
     '$.input_sets[0].inputs.sha256: "abc" does not match ^[0-9a-f]{64}$'),
    ("path_escape", setitem(["input_sets", 0, "inputs", "file"], "../../etc/passwd"),
     f'$.input_sets[0].inputs.file: "../../etc/passwd" does not match {RELPATH}'),
    ("path_absolute", setitem(["artifact", "file"], "/etc/passwd"),
     f'$.artifact.file: "/etc/passwd" does not match {RELPATH}'),
    ("path_nul", setitem(["artifact", "file"], "artifact.pt\x00.txt"),
     f'$.artifact.file: "artifact.pt\\u0000.txt" does not match {RELPATH}'),
    ("name_long", setitem(["input_sets", 0, "name"], "a" * 26000), "$.input_sets[0].name: longer than 128 characters"),
    ("reason_long", setitem(["xfail"], {"reason": "x" * 5000}), "$.xfail.reason: longer than 4096 characters"),
    ("set_name", setitem(["input_sets", 0, "name"], "Bad Name"),
     '$.input_sets[0].name: "Bad Name" does not match ^[a-z][a-z0-9_]*$'),
    ("set_extra", setitem(["input_sets", 0, "extra"], 1), "$.input_sets[0]: unexpected key 'extra'"),
    ("prelude_arg", setitem(["input_sets", 0, "prelude"], [{"method": "x", "args": [[1]]}]),
     "$.input_sets[0].prelude[0].args[0]: expected string or number or integer or boolean or null, got array"),
    ("artifact_bytes", setitem(["artifact", "bytes"], 0), "$.artifact.bytes: must be >= 1, got 0"),
    ("xfail_empty", setitem(["xfail"], {"reason": ""}), '$.xfail.reason: "" does not match \\S'),
    ("sets_not_array", setitem(["input_sets"], "none"), "$.input_sets: expected array, got string"),
]


@pytest.mark.parametrize(("mutate", "message"), [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_violations_are_refused_by_both_validators(mutate: Callable[[dict], None], message: str) -> None:
    m = copy.deepcopy(manifests()["full_model"])
    mutate(m)
    assert validate("manifest", m) == message  # the core's words
    assert standard("manifest", m).startswith("$")  # jsonschema refuses it too, in its own words


CASES = json.loads((ROOT / "tests" / "data" / "schema-keyword-cases.json").read_text())["groups"]


@pytest.mark.parametrize("group", CASES, ids=[f"{g['keyword']}-{i}" for i, g in enumerate(CASES)])
def test_keyword_cases_agree_with_a_standard_validator(group: dict) -> None:
    text = json.dumps(group["schema"])
    for case in group["tests"]:
        core = _core.validate_with_schema(text, json.dumps(case["data"])) == ""
        std = standard_validate(group["schema"], case["data"]) == ""
        assert (core, std) == (case["valid"], case["valid"]), case


@pytest.mark.parametrize("schema", [{"oneOf": [{"type": "integer"}]}, {"minProperties": 1},
                                    {"properties": {"a": {"format": "email"}}}, {"items": [{"type": "integer"}]}])
def test_a_keyword_not_implemented_is_refused_not_ignored(schema: dict) -> None:
    with pytest.raises(RuntimeError, match="not implemented|must be an object"):
        _core.validate_with_schema(json.dumps(schema), json.dumps({"a": "x"}))


def test_corpus_index_violations() -> None:
    index = json.loads((GOLDEN / "corpus.json").read_text())
    index["cases"][0]["name"] = "../up"
    expected = '$.cases[0].name: "../up" does not match ^[a-z][a-z0-9_]*$'
    assert validate("corpus", index) == expected == _core.validate("corpus", json.dumps(index))
    assert _core.validate("corpus", "{nope").startswith("$: invalid JSON")
