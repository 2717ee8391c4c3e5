"""The exporters: artifacts reloaded in Python agree with eager, exports are deterministic, routing is as claimed,
hazards are recorded, and the corpus writer never loses a corpus."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import GOLDEN, ROOT, TC, manifests, semantic_members, sha256, tc_here
from torchconform import Built, Case, CaseError
from torchconform.authoring import models
from torchconform.authoring.builtin import dynamic_router, process_outputs, simple_cnn
from torchconform.authoring.case import Call, InputSet
from torchconform.authoring.registry import all_cases, select
from torchconform.writing.writer import invoke, write_corpus

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end

GOLDEN_MANIFESTS = manifests()
SETS = [(name, s["name"]) for name, m in GOLDEN_MANIFESTS.items() for s in m["input_sets"]]


def assert_same(expected: Any, actual: Any, where: str = "$") -> None:
    """Kinds must match exactly (tuple is not list, int is not float); tensors by torch.testing.assert_close."""
    both_tensors = isinstance(expected, torch.Tensor) and isinstance(actual, torch.Tensor)
    assert type(expected) is type(actual) or both_tensors, \
        f"{where}: expected {type(expected).__name__}, got {type(actual).__name__}"
    if isinstance(expected, torch.Tensor):
        torch.testing.assert_close(actual, expected, equal_nan=True, msg=lambda m: f"{where}: {m}")
    elif isinstance(expected, (tuple, list)):
        assert len(expected) == len(actual), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_same(e, a, f"{where}[{i}]")
    elif isinstance(expected, dict):
        assert expected.keys() == actual.keys(), f"{where}: keys differ"
        for k in expected:
            assert_same(expected[k], actual[k], f"{where}[{k!r}]")
    elif isinstance(expected, float):
        torch.testing.assert_close(actual, expected, msg=lambda m: f"{where}: {m}")
    else:
        assert expected == actual, f"{where}: {expected!r} != {actual!r}"


def load_set(case: str, set_name: str) -> tuple[InputSet, Any]:
    s = next(x for x in GOLDEN_MANIFESTS[case]["input_sets"] if x["name"] == set_name)
    args = torch.load(GOLDEN / case / s["inputs"]["file"], weights_only=True)
    expected = torch.load(GOLDEN / case / s["expected"]["file"], weights_only=True)
    prelude = tuple(Call(c["method"], tuple(c["args"])) for c in s["prelude"])
    return InputSet(set_name, args, s["description"], seed=s["seed"], prelude=prelude), expected


@pytest.mark.parametrize(("case", "set_name"), SETS, ids=[f"{c}[{s}]" for c, s in SETS])
def test_artifact_reloaded_in_python_matches_eager(case: str, set_name: str) -> None:
    # Same policy as the C++ runner: TensorExpr fuser off, inference mode, every one of two calls checked.
    torch._C._jit_set_texpr_fuser_enabled(False)
    module = torch.jit.load(str(GOLDEN / case / "artifact.pt"))
    module.eval()
    s, expected = load_set(case, set_name)
    with torch.inference_mode():
        for _ in range(2):
            assert_same(expected, invoke(module, s))


def test_golden_checks_traces_beyond_their_example() -> None:
    for name, m in GOLDEN_MANIFESTS.items():
        if m["mode"] not in ("trace", "hybrid"):
            continue
        example = m["export_conditions"]["trace_example"]
        assert example, name
        others = [s for s in m["input_sets"] if not s["inputs_signature"].startswith(example.rstrip(",)"))]
        assert len(others) >= 2, f"{name}: only checked on its trace example's shape"


def training_submodules(module) -> list[str]:
    """The submodules of a loaded TorchScript module still in training mode (a trace made in training mode, as the
    spec's FullModel does, saves them so: dropout stays on in every runtime)."""
    # (torch.jit.freeze drops the attribute; it refuses a module in training mode in the first place.)
    return [name or "<root>" for name, m in module.named_modules() if m._c.hasattr("training") and m.training]


def test_golden_artifacts_were_saved_in_eval_mode(tmp_path: Path) -> None:
    checked = set()
    for name, m in GOLDEN_MANIFESTS.items():
        # (A scripted function has no mode: ScriptFunction.save wraps it in a module whose `training` nothing reads.)
        files = [m["artifact"]] if "artifact" in m and m["mode"] != "script_function" else []
        files += [v for v in m.get("variants", []) if v.get("kind") == "torchscript" and "file" in v and
                  not v.get("xfail")]
        for ref in files:
            loaded = torch.jit.load(str(GOLDEN / name / ref["file"]))
            if hasattr(loaded, "named_modules"):  # (a scripted function has no modules)
                assert training_submodules(loaded) == [], f"{name}/{ref['file']}"
                checked.add(name)
    assert checked == {n for n, m in GOLDEN_MANIFESTS.items() if "artifact" in m and m["mode"] != "script_function"}
    # Negative control: the spec's recipe (trace a module left in training mode) is caught.
    path = tmp_path / "train.pt"
    torch.jit.save(torch.jit.trace(models.SimpleCNN(num_classes=10).train(), torch.randn(1, 3, 32, 32)), str(path))
    assert "<root>" in training_submodules(torch.jit.load(str(path)))


def test_router_inputs_route_as_claimed() -> None:
    case = next(c for c in all_cases() if c.name == "dynamic_router")
    torch.manual_seed(case.seed)
    model = case.build(case.seed).eager
    seen = {}
    for s in GOLDEN_MANIFESTS["dynamic_router"]["input_sets"]:
        (x,) = torch.load(GOLDEN / "dynamic_router" / s["inputs"]["file"], weights_only=True)
        counts, margin = dynamic_router.route(model, x)
        assert counts == s["facts"]["expert_counts"], s["name"]
        assert margin > dynamic_router.ROUTER_MIN_MARGIN
        seen[s["name"]] = counts
    assert all(n > 0 for n in seen["all_experts"])
    assert 0 in seen["experts_1_3_empty"]
    assert sum(seen["batch1"]) == 1


def test_full_model_hazards_are_recorded() -> None:
    hazards = {h["name"]: h for h in GOLDEN_MANIFESTS["full_model"]["hazards"]}
    spec = hazards["spec_trace_in_training_mode"]
    # The spec's training-mode trace keeps dropout on: far from the eval model, with the tracer's own warnings.
    assert spec["max_abs_diff_vs_eval_model"] > 1e-2
    assert any(w["category"] == "TracerWarning" for w in spec["warnings"])
    grad = hazards["trace_eval_with_grad_enabled"]
    assert grad["outcome"] == "raised" and "TracingCheckError" in grad["error"]
    assert GOLDEN_MANIFESTS["full_model"]["spec_deviations"]
    # The set_temperature check can fail: the cooled draw differs from the default one.
    t025 = next(s for s in GOLDEN_MANIFESTS["full_model"]["input_sets"] if s["name"] == "sample_b2_s12_t025")
    assert t025["facts"]["positions_differing_from_default_temperature"] > 0


def test_tracer_warnings_are_recorded(tmp_path: Path) -> None:
    neg = Case("dynamic_router_traced", "trace", "negative control", dynamic_router.traced_router_negative_control, 202)
    write_corpus(tmp_path / "c", [neg], log=lambda m: None)
    m = json.loads((tmp_path / "c" / "dynamic_router_traced" / "manifest.json").read_text())
    texts = [w["message"] for w in m["tracer_warnings"]]
    assert any("Python boolean" in t for t in texts), texts


def export_cli(out: Path, *args: str, hash_seed: str | None = "0") -> subprocess.CompletedProcess[str]:
    """``torchconform export``; ``hash_seed=None`` starts it as users do, without PYTHONHASHSEED (the exporter then
    re-executes itself with the seed fixed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    return subprocess.run([*TC, "export", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600, env=env)


def comparable_manifest(path: Path) -> dict:
    m = json.loads(path.read_text())
    for entry in [m["artifact"], *[v for v in m.get("variants", []) if "file" in v]]:
        entry.pop("sha256")
        entry.pop("bytes")
    return m


@pytest.mark.heavy
def test_reexport_is_deterministic(tmp_path: Path) -> None:
    # In a fresh process, as users export: TorchScript mangles the names of classes compiled twice in one process
    # (__torch_mangle_N), so a second export inside a process that already scripted the same models writes
    # artifacts with other names (same code and weights).
    out = tmp_path / "again"
    r = export_cli(out, hash_seed=None)  # as users export: no PYTHONHASHSEED in the environment
    assert r.returncode == 0, r.stderr
    made_with = json.loads((GOLDEN / "corpus.json").read_text())["exported_with"]
    here = json.loads((out / "corpus.json").read_text())["exported_with"]
    if (made_with["torch"], made_with["cpu_capability"]) == (here["torch"], here["cpu_capability"]):
        reference = GOLDEN
    else:  # golden made by another torch or CPU kernel set: check determinism against a second export
        reference = tmp_path / "third"
        assert export_cli(reference, hash_seed="12345").returncode == 0  # (re-executed with the seed fixed)
    files = sorted(p.relative_to(reference) for p in reference.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    # Inputs and goldens: bit for bit, byte for byte.
    data = [f for f in files if f.parent.name == "sets"]
    assert len(data) == 2 * sum(len(m["input_sets"]) for m in manifests(reference).values())
    assert [str(f) for f in data if sha256(reference / f) != sha256(out / f)] == []
    # Artifacts: the same code, constants and weights.
    for f in files:
        if f.suffix in (".pt", ".pt2") and f.parent.name != "sets":  # artifacts, variants, exported programs
            assert semantic_members(reference / f) == semantic_members(out / f), f
        if f.suffix == ".pt2":  # no path of the exporting machine in an exported program
            assert all(str(ROOT).encode() not in data for data in semantic_members(out / f).values()), f
        elif f.name == "manifest.json":
            assert comparable_manifest(reference / f) == comparable_manifest(out / f), f


def test_export_cli_errors(tmp_path: Path) -> None:
    r = tc_here("export", "--out", GOLDEN)
    assert r.returncode == 2 and "already exists; pass --force" in r.stderr
    r = tc_here("export", "--out", tmp_path / "x", "--case", "nope*")
    assert r.returncode == 2 and "matches no case" in r.stderr
    assert not (tmp_path / "x").exists()
    from torchconform.writing.executorch import available

    if available():  # this environment has no ExecuTorch (ci/executorch.sh's has): said before anything is written
        r = export_cli(tmp_path / "x", "--case", "process_outputs", "--executorch")
        assert r.returncode == 2 and "--executorch: the executorch package does not import here" in r.stderr
        assert "ci/executorch.sh" in r.stderr and not (tmp_path / "x").exists()


def test_export_refuses_to_overwrite_and_survives_failure(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    cases = select(["process_outputs"])
    write_corpus(out, cases, log=lambda m: None)
    before = {p: sha256(p) for p in out.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError):
        write_corpus(out, cases, log=lambda m: None)

    def broken(seed: int) -> Built:
        raise RuntimeError("boom")

    with pytest.raises(CaseError, match="case 'broken': build failed: RuntimeError: boom"):
        write_corpus(out, [*cases, Case("broken", "script", "fails", broken, 1)], force=True, log=lambda m: None)
    assert {p: sha256(p) for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"], "a partial export was left behind"


def test_case_declaration_errors() -> None:
    from torchconform.authoring.registry import register

    with pytest.raises(CaseError, match="unknown mode 'jit'"):
        register(Case("x_bad_mode", "jit", "", process_outputs.build_process_outputs, 1))  # type: ignore[arg-type]
    with pytest.raises(CaseError, match="name must match"):
        register(Case("Bad-Name", "script", "", process_outputs.build_process_outputs, 1))
    with pytest.raises(CaseError, match="declared twice"):
        register(Case("simple_cnn", "trace", "", simple_cnn.build_simple_cnn, 1))
    with pytest.raises(CaseError, match="matches no case"):
        select(["nope*"])


def test_export_expected_failures_are_strict() -> None:
    """capture(): a failing torch.export is recorded only when marked; a marked capture that succeeds is refused."""
    from torchconform.authoring.case import CaseError
    from torchconform.authoring.variants import capture

    x = torch.randn(8, 16)
    dims = ({0: torch.export.Dim("batch", min=1, max=64)},)
    with pytest.raises(CaseError, match="torch.export of variant 'export' failed: GuardOnDataDependentSymNode"):
        capture("export", models.DynamicRouter(16, 4), (x,), dims, description="unmarked")
    failed = capture("export", models.DynamicRouter(16, 4), (x,), dims, description="marked",
                     expect_failure="data-dependent branch")
    assert failed.artifact is None and failed.xfail == "data-dependent branch"
    assert failed.error.startswith("GuardOnDataDependentSymNode") and failed.details["raised_at"].endswith(
        "if mask.any():")
    with pytest.raises(CaseError, match="XPASS: torch.export now captures variant 'export'"):
        capture("export", models.MaskedRouter(16, 4), (x,), dims, description="stale", expect_failure="stale")


def test_variants_are_recorded_with_node_counts_and_python_checks() -> None:
    for name, m in GOLDEN_MANIFESTS.items():
        assert any(v["kind"] == "exported_program" for v in m["variants"]), f"{name}: no torch.export outcome"
        if m["mode"] in ("trace", "script") and name != "dynamic_router_masked":
            assert {v["name"] for v in m["variants"]} >= {"frozen", "optimized", "passes"}, name
        for v in m["variants"]:
            if "file" not in v:
                assert v["xfail"]["reason"] and v["error"], (name, v["name"])
                continue
            assert v["graph_node_counts"], (name, v["name"])
            if v["kind"] == "torchscript" and "xfail" not in v:
                checked = v["python_check"]
                assert set(checked) == set(v.get("input_sets") or [s["name"] for s in m["input_sets"]])
                assert all(c["max_abs_vs_golden"] is not None and c["max_abs_vs_golden"] < 1e-4
                           for c in checked.values()), (name, v["name"], checked)
    # freeze folds the parameters: no GetAttr is left in the frozen graph of the traced CNN.
    cnn = GOLDEN_MANIFESTS["simple_cnn"]
    frozen = next(v for v in cnn["variants"] if v["name"] == "frozen")
    assert cnn["graph_node_counts"].get("prim::GetAttr", 0) > 0 and "prim::GetAttr" not in frozen["graph_node_counts"]
