"""The minimum tolerance that would have passed (issue: say where and by how much): every leaf reports the smallest
rtol at its atol and the smallest atol at its rtol that accept every element (max_ulp is the ULP one), the JSON report
carries them, a FAIL says them, and they are boundaries: a tolerance just above passes, just below fails."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import GOLDEN, perturbed_corpus
from torchconform import _core


def allclose(rtol: float, atol: float) -> dict:
    return {"default": {"mode": "allclose", "rtol": rtol, "atol": atol}, "outputs": {}}


def test_needed_atol_and_rtol_are_boundaries() -> None:
    e = torch.tensor([1.0, -2.0, 4.0, 0.5], dtype=torch.float64)
    a = e + torch.tensor([1e-3, -3e-4, 2e-3, 0.0], dtype=torch.float64)
    rtol, atol = 1e-5, 1e-6
    leaf = _core.compare(e, a, allclose(rtol, atol)).leaves[0]
    want_atol = max(1e-3 - rtol * 1.0, 3e-4 - rtol * 2.0, 2e-3 - rtol * 4.0)
    want_rtol = max((1e-3 - atol) / 1.0, (3e-4 - atol) / 2.0, (2e-3 - atol) / 4.0)
    assert leaf.needed_atol == pytest.approx(want_atol, rel=1e-9)
    assert leaf.needed_rtol == pytest.approx(want_rtol, rel=1e-9)
    # Boundaries: each alone, the other as it was.
    assert _core.compare(e, a, allclose(rtol, leaf.needed_atol * (1 + 1e-9))).ok
    assert not _core.compare(e, a, allclose(rtol, leaf.needed_atol * (1 - 1e-6))).ok
    assert _core.compare(e, a, allclose(leaf.needed_rtol * (1 + 1e-9), atol)).ok
    assert not _core.compare(e, a, allclose(leaf.needed_rtol * (1 - 1e-6), atol)).ok
    ulp = _core.compare(e, a, {"default": {"mode": "ulp", "max_ulp": int(leaf.max_ulp)}, "outputs": {}})
    assert ulp.ok
    assert not _core.compare(e, a, {"default": {"mode": "ulp", "max_ulp": int(leaf.max_ulp) - 1}, "outputs": {}}).ok


def test_what_no_tolerance_passes_needs_an_unbounded_one() -> None:
    zero = torch.tensor([0.0, 1.0])
    leaf = _core.compare(zero, zero + torch.tensor([1e-3, 0.0])).leaves[0]
    assert math.isinf(leaf.needed_rtol) and leaf.needed_atol > 0  # no rtol scales a difference at 0
    assert math.isinf(_core.compare(torch.tensor([float("nan")]), torch.tensor([1.0])).needed_atol)
    ints = _core.compare(torch.tensor([1, 2]), torch.tensor([1, 3]))
    assert math.isinf(ints.needed_rtol) and math.isinf(ints.needed_atol)
    shape = _core.compare(torch.zeros(2), torch.zeros(3))
    assert math.isinf(shape.needed_atol)
    # Equal outputs need nothing, bitwise or not.
    same = _core.compare((torch.ones(3), 4, "x"), (torch.ones(3), 4, "x"))
    assert same.ok and same.needed_rtol == 0 and same.needed_atol == 0


@pytest.mark.e2e
def test_a_fail_says_what_would_pass(tmp_path, run_cli, golden_run) -> None:
    corpus = perturbed_corpus(tmp_path)  # one golden element moved by 1e-3
    r = run_cli(corpus, "--case", "simple_cnn", "--json", tmp_path / "r.json")
    assert r.returncode == 1
    row = next(x for x in json.loads((tmp_path / "r.json").read_text())["results"]
               if x["artifact"] == "" and x["input_set"] == "b4_32x32")
    leaf = row["leaves"][0]
    assert row["verdict"] == "FAIL" and row["needed_atol"] == leaf["needed_atol"]
    assert 1e-3 * 0.9 < leaf["needed_atol"] < 1e-3 * 1.1, leaf
    assert "would pass with rtol >= " in leaf["message"] and "would pass with" in row["line"]
    # An untouched set needs what it needs on this machine: nothing where LibTorch reproduces the golden bit for bit,
    # the distance from the exporting machine's kernels elsewhere; either way exactly what golden/ itself needs here.
    passing = next(x for x in json.loads((tmp_path / "r.json").read_text())["results"]
                   if x["artifact"] == "" and x["input_set"] == "trace_example")
    here = next(x for x in json.loads(golden_run.json.read_text())["results"]
                if (x["case"], x["artifact"], x["input_set"]) == ("simple_cnn", "", "trace_example"))
    assert passing["verdict"] == "PASS"
    assert (passing["needed_atol"], passing["needed_rtol"]) == (here["needed_atol"], here["needed_rtol"])
    if passing["max_abs"] == 0:  # bitwise equal: nothing needed
        assert passing["needed_atol"] == 0 and passing["needed_rtol"] == 0


@pytest.mark.e2e
def test_tolerances_suggests_only_what_is_needed(tmp_path, capsys) -> None:
    from torchconform.faces.cli import main

    assert main(["tolerances", str(GOLDEN), "--device", "cpu", "--case", "simple_cnn", "--suggest"]) == 0
    assert "No output needs a looser tolerance." in capsys.readouterr().out  # the control: golden/ passes as is
    corpus = perturbed_corpus(tmp_path)  # one golden element moved by 1e-3
    assert main(["tolerances", str(corpus), "--device", "cpu", "--case", "simple_cnn", "--suggest"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("- simple\\_cnn:"))  # the TorchScript artifact's policy
    policy = json.loads(line.split("`")[1])
    atol = policy["outputs"]["$"]["atol"]
    assert 1.8e-3 < atol < 2.2e-3, line  # twice the measured need
    assert main(["tolerances", str(corpus), "--margin", "0.5"]) == 2
