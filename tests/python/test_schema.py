"""docs/corpus-schema.json: every golden file satisfies it, and every violation is reported with the same message
by the C++ runner and the Python exporter (one schema file, two implementations of the same keywords)."""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import pytest

from conftest import GOLDEN, ROOT, manifests
from torchconform import _core
from torchconform.schema import validate


def test_schema_compiled_in_is_the_docs_file() -> None:
    assert json.loads(_core.corpus_schema()) == json.loads((ROOT / "docs" / "corpus-schema.json").read_text())


def test_golden_satisfies_the_schema() -> None:
    assert validate("corpus", json.loads((GOLDEN / "corpus.json").read_text())) == ""
    for name, m in manifests().items():
        assert validate("manifest", m) == "", name
        assert _core.validate("manifest", json.dumps(m)) == "", name


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
def test_violations_get_the_same_message_in_python_and_cpp(mutate: Callable[[dict], None], message: str) -> None:
    m = copy.deepcopy(manifests()["full_model"])
    mutate(m)
    assert validate("manifest", m) == message
    assert _core.validate("manifest", json.dumps(m)) == message


def test_corpus_index_violations() -> None:
    index = json.loads((GOLDEN / "corpus.json").read_text())
    index["cases"][0]["name"] = "../up"
    expected = '$.cases[0].name: "../up" does not match ^[a-z][a-z0-9_]*$'
    assert validate("corpus", index) == expected == _core.validate("corpus", json.dumps(index))
    assert _core.validate("corpus", "{nope").startswith("$: invalid JSON")
