"""Localising a mismatch (export with record_submodules, the runner replays each recorded submodule call on the
artifact's own submodule with the recorded eager inputs). Negative controls: one layer's weight perturbed in the
artifact is reported as exactly that submodule, first; an unperturbed artifact localises nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import rehash
from torchconform.authoring.registry import select
from torchconform.writing.writer import write_corpus

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("localize") / "corpus"
    cases = [dataclasses.replace(c, record_submodules=True)
             for c in select(["simple_cnn", "dynamic_router", "full_model"])]
    write_corpus(out, cases, log=lambda m: None)
    return out


def copy_of(recorded: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(recorded, tmp_path / "corpus")
    return tmp_path / "corpus"


def perturb(corpus: Path, case: str, dotted: str, by: float = 0.05) -> None:
    """Adds `by` to one parameter of the case's TorchScript artifact (its file, re-signed): a deployment bug in
    exactly one layer."""
    path = corpus / case / "artifact.pt"
    m = torch.jit.load(str(path))
    *mods, name = dotted.split(".")
    target = m
    for part in mods:
        target = getattr(target, part)
    with torch.no_grad():
        getattr(target, name).add_(by)
    m.save(str(path))
    rehash(corpus, case)


def results(path: Path) -> list[dict]:
    return json.loads(path.read_text())["results"]


def test_records_are_in_the_corpus(recorded: Path) -> None:
    m = json.loads((recorded / "simple_cnn" / "manifest.json").read_text())
    for s in m["input_sets"]:
        rec = s["submodules"]
        assert rec["calls"] >= 9 and (recorded / "simple_cnn" / rec["file"]).stat().st_size == rec["bytes"]


def test_unperturbed_localises_nothing(recorded: Path, tmp_path: Path, run_cli) -> None:
    r = run_cli(recorded, "--localize", "--json", tmp_path / "r.json")
    assert r.returncode == 0, r.stdout + r.stderr
    primary = [x for x in results(tmp_path / "r.json") if x["artifact"] == "" and x["case"] == "simple_cnn"]
    assert primary and all(x["localization"]["ran"] for x in primary)
    for x in primary:
        loc = x["localization"]
        assert loc["first_divergence"] == ""
        replayed = [k for k in loc["submodules"] if k["replayed"]]
        assert {"features.0.conv", "features.2.conv", "classifier"} <= {k["path"] for k in replayed}
        assert all(k["comparison"]["ok"] for k in replayed)
    assert "localize: " in r.stdout
    # A hybrid model: the traced encoder's layers are called with keyword inputs (src_mask=None, is_causal=False)
    # that tracing baked in: replayed without them, saying so; their inner modules have no methods of their own
    # (inlined into the layer's graph): said per call, never an error of the set.
    full = [x for x in results(tmp_path / "r.json") if x["artifact"] == "" and x["case"] == "full_model"
            and x["localization"]]
    assert full and all(x["verdict"] == "PASS" and x["localization"]["first_divergence"] == "" for x in full)
    checks = full[0]["localization"]["submodules"]
    layers = [k for k in checks if k["path"].startswith("encoder.layers.layers.") and k["path"].count(".") == 3]
    assert len(layers) == 6 and all(k["replayed"] and k["comparison"]["ok"] for k in layers), layers
    assert all("is_causal=False" in k["note"] and "baked in by tracing" in k["note"] for k in layers)
    assert any("inlined" in k["why_not"] for k in checks)


@pytest.mark.parametrize(("case", "parameter", "expected", "input_set"), [
    ("simple_cnn", "features.2.conv.weight", "features.2.conv", "b4_32x32"),
    ("dynamic_router", "experts.1.bias", "experts.1", "all_experts"),
    # one layer of the hybrid's traced encoder (a bias: a constant added to the weights would cancel in the
    # LayerNorm'd, zero-mean input)
    ("full_model", "encoder.layers.layers.1.linear1.bias", "encoder.layers.layers.1", "greedy_b2_s24"),
])
def test_a_perturbed_layer_is_the_first_divergence(recorded, tmp_path, run_cli, case, parameter, expected,
                                                   input_set) -> None:
    corpus = copy_of(recorded, tmp_path)
    perturb(corpus, case, parameter)
    r = run_cli(corpus, "--case", case, "--json", tmp_path / "r.json")  # localisation is on for a FAIL by default
    assert r.returncode == 1, r.stdout
    row = next(x for x in results(tmp_path / "r.json") if x["artifact"] == "" and x["input_set"] == input_set)
    assert row["verdict"] == "FAIL"
    first = row["localization"]["first_divergence"]
    assert first.startswith(expected + " ("), row["localization"]
    assert f"[first diverging submodule: {expected} (" in row["line"]
    # Only the perturbed layer and what contains it diverge on their own recorded inputs.
    diverging = {k["path"] for k in row["localization"]["submodules"] if k["replayed"] and not k["comparison"]["ok"]}
    assert all(expected.startswith(p) or p == expected for p in diverging), diverging
    # The variants, made from the unperturbed model, still match the goldens and differ from the perturbed artifact
    # (their second comparison); they have no hierarchy to replay and say so.
    for x in results(tmp_path / "r.json"):
        if x["artifact"] and x["verdict"] == "FAIL" and x["input_set"] == input_set:
            assert x["ok"] and not x["vs_artifact"]["ok"], x["line"]
            if x["runtime"] == "torchscript":
                assert x["localization"]["note"].startswith("whole-model comparison only"), x["localization"]
    r = run_cli(corpus, "--case", case, "--no-localize", "--json", tmp_path / "n.json")
    row = next(x for x in results(tmp_path / "n.json") if x["artifact"] == "" and x["input_set"] == input_set)
    assert row["verdict"] == "FAIL" and row["localization"] is None
