"""The noise envelope (export --envelope): recorded per set and output, and every result reported relative to it.
Controls: verified under one of the envelope's own sources the artifact is within it; a golden moved by ten times
the envelope (still inside the tolerance, so the verdict stays PASS) is reported outside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import ROOT, compiled, rehash
from torchconform import _core
from torchconform.authoring.registry import select
from torchconform.schema import standard_validate
from torchconform.writing import envelope
from torchconform.writing.writer import write_corpus

# e2e: runs the runner, the CLI or an export end to end; one xdist group: the module's export is made once
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("envelope")]

SCHEMA = json.loads((ROOT / "docs" / "report-schema.json").read_text())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("envelope") / "corpus"
    write_corpus(out, select(["simple_cnn", "process_outputs"]), envelope=True, log=lambda m: None)
    return compiled(out)


def run(runner: Path, corpus: Path, out: Path, *args: str, env: dict[str, str] | None = None) -> list[dict]:
    r = subprocess.run([str(runner), str(corpus), "--json", str(out), "--quiet", *args], capture_output=True,
                       text=True, timeout=600, env={**os.environ, **(env or {})})
    assert r.returncode in (0, 1), r.stdout + r.stderr
    report = json.loads(out.read_text())
    assert _core.validate_with_schema(json.dumps(SCHEMA), json.dumps(report)) == ""
    assert standard_validate(SCHEMA, report) == ""
    return report["results"]


def test_recorded_per_set_and_output(corpus: Path) -> None:
    labels = [label for label, _, _ in envelope.sources(1)]
    assert labels  # this machine has a lower capability level or more than one core
    m = json.loads((corpus / "simple_cnn" / "manifest.json").read_text())
    for s in m["input_sets"]:
        env = s["envelope"]
        assert env["sources"] == labels and set(env["outputs"]) == {"$"}
        assert env["outputs"]["$"]["max_abs"] >= 0 and env["outputs"]["$"]["max_ulp"] >= 0
    m = json.loads((corpus / "process_outputs" / "manifest.json").read_text())
    assert all(set(s["envelope"]["outputs"]) == {"$[0]"} for s in m["input_sets"])  # the list of ints has none


def test_within_at_home_and_under_its_own_sources(runner: Path, corpus: Path, tmp_path: Path) -> None:
    for i, (label, env, threads) in enumerate([("as exported", {}, 1), *envelope.sources(1)]):
        results = run(runner, corpus, tmp_path / f"{i}.json", "--threads", str(threads), env=env)
        primary = [r for r in results if r["artifact"] == ""]
        assert primary and all(r["envelope"]["within"] and r["envelope"]["ratio"] <= 1 for r in primary), label
        assert all("[noise envelope: " in r["line"] for r in primary)
    # Every compared result of the last run (variants and exported programs too) is reported against the envelope.
    assert all(r["envelope"] is not None for r in results if r["verdict"] in ("PASS", "FAIL"))


def test_a_golden_moved_beyond_the_envelope_is_outside_it(runner: Path, corpus: Path, tmp_path: Path) -> None:
    moved = tmp_path / "corpus"
    shutil.copytree(corpus, moved)
    m = json.loads((moved / "simple_cnn" / "manifest.json").read_text())
    bound = next(s for s in m["input_sets"] if s["name"] == "b4_32x32")["envelope"]["outputs"]["$"]["max_abs"]
    step = max(10 * bound, 1e-7)  # far outside the envelope, far inside atol=1e-5
    path = moved / "simple_cnn" / "sets" / "b4_32x32.expected.pt"
    expected = torch.load(path, weights_only=True)
    expected[1, 3] += step
    torch.save(expected, path)
    rehash(moved, "simple_cnn")
    results = run(runner, moved, tmp_path / "r.json", "--case", "simple_cnn")
    row = next(r for r in results if r["artifact"] == "" and r["input_set"] == "b4_32x32")
    assert row["verdict"] == "PASS"  # the tolerance accepts it ...
    assert not row["envelope"]["within"] and row["envelope"]["ratio"] > 5  # ... the envelope does not
    assert "outside the noise envelope: $ max_abs" in row["envelope"]["detail"]
    assert ", outside]" in row["line"]
    others = [r for r in results if r["artifact"] == "" and r["input_set"] != "b4_32x32"]
    assert others and all(r["envelope"]["within"] for r in others)  # control: the untouched sets stay within


@pytest.mark.parametrize("bound", [-1.0, "1e-7", None])
def test_a_malformed_envelope_is_a_corpus_error(runner: Path, corpus: Path, tmp_path: Path, bound) -> None:
    """A re-signed corpus whose envelope is negative, a string or null must not be read as an envelope (a negative
    one would report every result 'outside', a huge one hide everything): the corpus is refused."""
    bad = tmp_path / "corpus"
    shutil.copytree(corpus, bad)
    mpath = bad / "simple_cnn" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["input_sets"][0]["envelope"]["outputs"]["$"]["max_abs"] = bound
    mpath.write_text(json.dumps(m))
    rehash(bad, "simple_cnn")
    r = subprocess.run([str(runner), str(bad), "--quiet"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "envelope" in (r.stdout + r.stderr), r.stdout + r.stderr
