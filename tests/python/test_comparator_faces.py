"""One comparator, every face: the same (expected, actual, tolerance) pairs give the same verdict from the C++ CLI,
the bindings and compat's Python column (whose probe only runs the model and saves its outputs, judged here with the
core). Each pair is one where a copy of the comparator used to disagree with compare.cpp: exact mode on +0/-0, ULPs
in float16, equal_nan false, a float scalar under an atol override, complex64, a golden with the neg bit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import rehash
from torchconform import Built, Case, InputSet, _core
from torchconform.tools import compat
from torchconform.writing.writer import write_corpus

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end


def tensor_identity(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


def float_identity(x: float) -> float:
    return x


half = torch.tensor([1.0, 2.0], dtype=torch.float16)
two_ulps = torch.tensor([1.0 + 2 * 2**-10, 2.0], dtype=torch.float16)
z = torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64)
t = torch.tensor([1.0, -2.5, 3.0])
nan = torch.tensor([float("nan"), 1.0])

# (name, expected, actual, tolerance, verdict)
PAIRS: list[tuple[str, Any, Any, dict, bool]] = [
    ("exact_signed_zero", torch.tensor([0.0]), torch.tensor([-0.0]), {"default": {"mode": "exact"}}, False),
    ("allclose_signed_zero", torch.tensor([0.0]), torch.tensor([-0.0]), {"default": {"mode": "allclose"}}, True),
    ("half_two_ulps_vs_1", half, two_ulps, {"default": {"mode": "ulp", "max_ulp": 1}}, False),
    ("half_two_ulps_vs_2", half, two_ulps, {"default": {"mode": "ulp", "max_ulp": 2}}, True),
    ("nan_not_equal", nan, nan.clone(), {"default": {"mode": "allclose", "equal_nan": False}}, False),
    ("nan_equal", nan, nan.clone(), {"default": {"mode": "allclose"}}, True),
    ("float_scalar_default", 1.0, 1.0 + 1e-6, {"default": {"mode": "allclose"}}, False),
    ("float_scalar_atol", 1.0, 1.0 + 1e-6, {"default": {"mode": "allclose"},
                                           "outputs": {"$": {"mode": "allclose", "atol": 1e-5}}}, True),
    ("complex64_off", z, z + 1e-3j, {"default": {"mode": "allclose"}}, False),
    ("complex64_within", z, z + 1e-7, {"default": {"mode": "allclose"}}, True),
    ("neg_bit_golden", torch._neg_view(t.clone()), t, {"default": {"mode": "allclose"}}, False),
    ("int64_exact", torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]), {"default": {"mode": "allclose"}}, False),
]


def _case(name: str, actual: Any) -> Case:
    fn = float_identity if isinstance(actual, float) else tensor_identity

    def build(seed: int) -> Built:
        return Built(eager=fn, artifact=torch.jit.script(fn), model=fn.__name__,
                     input_sets=[InputSet("pair", (actual,), "the pair's actual value, returned as is")])

    return Case(name, "script_function", "a comparator pair", build, 1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pairs") / "corpus"
    write_corpus(root, [_case(name, actual) for name, _, actual, _, _ in PAIRS], log=lambda m: None)
    for name, expected, _, tolerance, _ in PAIRS:  # the golden and the tolerance of the pair, re-signed
        torch.save(expected, root / name / "sets" / "pair.expected.pt")
        mpath = root / name / "manifest.json"
        m = json.loads(mpath.read_text())
        m["tolerance"] = {"outputs": {}, **tolerance}
        mpath.write_text(json.dumps(m, indent=2) + "\n")
        rehash(root, name)
    return root


def test_every_face_gives_the_same_verdict(corpus: Path, run_cli) -> None:
    report = corpus.parent / "report.json"
    run_cli(corpus, "--json", report, "--quiet", "--repeat", "1")
    cli = {r["case"]: r["verdict"] == "PASS" for r in json.loads(report.read_text())["results"]}
    bindings = {name: bool(_core.compare(expected, actual, {"outputs": {}, **tolerance}))
                for name, expected, actual, tolerance, _ in PAIRS}
    cell = compat.run_python_cell(compat.Runtime("this", sys.executable, "", torch.__version__), corpus, 600)
    python = {r["id"].split("/")[0]: r["class"] == compat.PASS for r in cell["results"]}
    want = {name: ok for name, _, _, _, ok in PAIRS}
    assert cli == want
    assert bindings == want
    assert python == want
