"""Localising a mismatch (export with record_submodules, the runner replays each recorded submodule call on the
artifact's own submodule with the recorded eager inputs). Negative controls: one layer's weight perturbed in the
artifact is reported as exactly that submodule, first; an unperturbed artifact localises nothing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import compiled, rehash
from torchconform.authoring.registry import select
from torchconform.writing.coverage import Coverage
from torchconform.writing.writer import write_corpus

# e2e: runs the runner, the CLI or an export end to end; one xdist group: the module's export is made once
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("localize")]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("localize") / "corpus"
    cases = [dataclasses.replace(c, record_submodules=True)
             for c in select(["simple_cnn", "dynamic_router", "full_model"])]
    # The written sets only: generated sets carry no records (docs/coverage.md), and these tests localise every set.
    write_corpus(out, cases, coverage=Coverage(bounds=False), log=lambda m: None)
    return compiled(out)


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
    aoti_rows = [x for x in results(tmp_path / "r.json")
                 if x["runtime"] == "aoti" and x["verdict"] == "FAIL" and x["input_set"] == input_set]
    # (golden/'s packages serve: the fixture's programs are byte-identical to golden/'s, compiled before pytest)
    assert len(aoti_rows) == (0 if case == "dynamic_router" else 1), [x["line"] for x in aoti_rows]
    for x in results(tmp_path / "r.json"):
        if x["artifact"] and x["verdict"] == "FAIL" and x["input_set"] == input_set:
            assert x["ok"] and not x["vs_artifact"]["ok"], x["line"]
            if x["runtime"] == "torchscript":
                assert x["localization"]["note"].startswith("whole-model comparison only"), x["localization"]
            if x["runtime"] == "aoti":  # an exported program: the note gives the command that localises it
                assert f"torchconform localize {corpus} --case {case} --program " in x["localization"]["note"]
                assert f"--set {input_set} --aoti`" in x["localization"]["note"]
    r = run_cli(corpus, "--case", case, "--no-localize", "--json", tmp_path / "n.json")
    row = next(x for x in results(tmp_path / "n.json") if x["artifact"] == "" and x["input_set"] == input_set)
    assert row["verdict"] == "FAIL" and row["localization"] is None


# ---- torch.export programs: node by node (fx.Interpreter) and AOTInductor debug packages (torchconform localize) ----

def perturb_program(corpus: Path, case: str, parameter: str, channel_scale: float = 1.01) -> None:
    """Scales output channel 0 of one parameter inside the case's exported program (its file, re-signed): the
    capture carries a wrong weight, the TorchScript artifact and the records do not."""
    path = corpus / case / "variants" / "export.pt2"
    ep = torch.export.load(str(path))
    with torch.no_grad():
        ep.state_dict[parameter][0].mul_(channel_scale)
    torch.export.save(ep, str(path))
    rehash(corpus, case)


def localize_cli(*args: object) -> tuple[int, dict]:
    from torchconform.faces.cli import main

    out = Path(str(args[-1]))
    code = main(["localize", *[str(a) for a in args[:-1]], "--quiet", "--json", str(out)])
    return code, json.loads(out.read_text())


def test_program_unperturbed_localises_nothing(recorded: Path, tmp_path: Path) -> None:
    for case, scopes in (("simple_cnn", 12), ("full_model", 58)):
        code, r = localize_cli(recorded, "--case", case, tmp_path / f"{case}.json")
        assert code == 0, r
        for s in r["sets"]:
            compared = [k for k in s["fx"] if k["compared"]]
            # every recorded submodule call is found in the graph by its nn_module_stack, and matches
            assert len(compared) == scopes and all(k["ok"] for k in compared), s
            assert s["fx_first_divergence"] == ""


def test_a_perturbed_program_node_is_found(recorded: Path, tmp_path: Path, capsys) -> None:
    corpus = copy_of(recorded, tmp_path)
    perturb_program(corpus, "simple_cnn", "features.2.conv.weight")
    code, r = localize_cli(corpus, "--case", "simple_cnn", "--set", "b4_32x32", "--aoti", tmp_path / "r.json")
    assert code == 1
    (s,) = r["sets"]
    assert s["fx_first_divergence"] == "features.2.conv (call 0, node conv2d_1)"
    assert s["aoti_first_divergence"] == "features.2.conv (call 0, node conv2d_1)", s["aoti_notes"]
    for side in ("fx", "aoti"):
        before = [k for k in s[side] if k["path"] in ("features.0.conv", "features.0", "features.1")]
        assert len(before) == 3 and all(k["compared"] and k["ok"] for k in before)  # upstream of it: clean
    assert "first: features.2.conv (call 0, node conv2d_1)" in capsys.readouterr().out
    # The corpus itself is unchanged for the runner: only the program's file was re-signed, and the TorchScript
    # artifact still matches (control for the perturbation landing in the program, not elsewhere).
    code, r = localize_cli(corpus, "--case", "full_model", tmp_path / "f.json")
    assert code == 0


def test_aoti_falls_back_to_bisection_when_marking_hides_the_mismatch(recorded: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """A mismatch that only the case's own package shows (fused differently once values are marked as outputs) is
    simulated: the case's package "fails" on the set, the marked package's model outputs pass. The command must say
    so and bisect over graph prefixes, and the bisection must still find the perturbed node in log2(scopes) probes.
    The debug packages here are stand-ins that compute the requested nodes with torch.fx (the real AOTInductor
    compile of a debug package, one node or many, is test_a_perturbed_program_node_is_found's): this test is about
    the decision and the bisection, without five compiles in CI."""
    from torchconform import _core as real
    from torchconform.safeload import load_exported_program
    from torchconform.tools import localize_export as le

    corpus = copy_of(recorded, tmp_path)
    perturb_program(corpus, "simple_cnn", "features.2.conv.weight")
    opened = real.Corpus.open(str(corpus))
    args, golden = real.load_set(opened, "simple_cnn", "b4_32x32")
    records = {(r[0], int(r[1])): r[-1] for r in real.load_records(opened, "simple_cnn", "b4_32x32")}
    program = load_exported_program(corpus / "simple_cnn" / "variants" / "export.pt2")
    values = le._Recorder(le._graph_module(program))
    with torch.no_grad():
        model_out = values.run(args[0])
    fake_case_package = tmp_path / "case-package.pt2"
    fake_case_package.write_bytes(b"")
    packages: dict[str, list[str]] = {}
    calls: list[str] = []

    def debug_package(program, flat, extra, workdir, tag):  # noqa: ANN001, ANN202 - le._debug_package's signature
        packages[str(workdir / f"{tag}.pt2")] = list(extra)
        return workdir / f"{tag}.pt2", 1

    class Core:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        @staticmethod
        def run_aoti_package(package: str, inputs: list, device: str) -> list:
            calls.append(Path(package).name)
            if package == str(fake_case_package):
                return [golden + 1.0]  # the case's own package fails the set
            extra = [values.values[n] for n in packages[package]]
            # the marked package's model output passes; a probe's is the program's own
            return [golden.clone() if Path(package).name == "marked.pt2" else model_out[0], *extra]

    monkeypatch.setattr(le, "_core", Core())
    monkeypatch.setattr(le, "_debug_package", debug_package)
    tolerance = {"default": {"mode": "allclose", "rtol": 1.3e-6, "atol": 1e-5}, "outputs": {}}
    checks, notes = le.aoti_checks(program, tuple(args), [], records, tolerance, golden, fake_case_package, "cpu",
                                   "mark", lambda m: None)
    assert any("made the mismatch disappear" in n for n in notes), notes
    assert any(n.startswith("bisection over 12 scope outputs") for n in notes), notes
    first = next(k for k in checks if k.compared and not k.ok)
    assert (first.path, first.node) == ("features.2.conv", "conv2d_1")
    assert calls[:2] == ["marked.pt2", "case-package.pt2"] and all(c.startswith("probe") for c in calls[2:])
    assert all(len(v) == 1 for k, v in packages.items() if "probe" in k)  # a probe outputs one scope's node
    assert len(calls) - 2 <= 4  # log2(12) probes, not one per scope
    # Control: when the case's own package fails too with marked outputs (no fusion effect), there is no bisection.
    calls.clear()

    class Failing(Core):
        @staticmethod
        def run_aoti_package(package: str, inputs: list, device: str) -> list:
            calls.append(Path(package).name)
            if package == str(fake_case_package):
                return [golden + 1.0]
            return [golden + 1.0, *[values.values[n] for n in packages[package]]]

    monkeypatch.setattr(le, "_core", Failing())
    checks, notes = le.aoti_checks(program, tuple(args), [], records, tolerance, golden, fake_case_package, "cpu",
                                   "mark", lambda m: None)
    assert not any("bisect" in n for n in notes) and calls == ["marked.pt2", "case-package.pt2"]
    first = next(k for k in checks if k.compared and not k.ok)
    assert first.path == "features.2.conv"
