"""Users' own cases: the examples/ walkthrough end to end, and declaration mistakes with the errors they get."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, counts, manifests, planned, tc, tc_here

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end

EXAMPLES = ROOT / "examples" / "my_cases.py"


@pytest.fixture(scope="module")
def example_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The walkthrough of examples/README.md: export the user's cases, compile their programs."""
    out = tmp_path_factory.mktemp("examples") / "my_corpus"
    r = tc("export", "--cases", EXAMPLES, "--out", out)
    assert r.returncode == 0, r.stderr
    r = tc("compile", out)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.xdist_group("example_corpus")  # one worker exports the module's fixture once
def test_examples_verify_from_cpp_with_every_artifact_kind(example_corpus: Path, run_cli) -> None:
    r = run_cli(example_corpus, "--json", example_corpus.parent / "r.json")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads((example_corpus.parent / "r.json").read_text())["results"]
    seen = {(x["case"], x["artifact"], x["input_set"]) for x in rows}
    assert {x["verdict"] for x in rows} == {"PASS"}
    assert ("residual_mlp", "", "b16") in seen and ("residual_mlp", "export@aoti", "b1") in seen
    assert ("residual_mlp", "frozen", "b7_large") in seen
    assert ("attention_block", "", "scores") in seen  # an exported method other than forward
    # mode "export": no TorchScript artifact, the program is what runs
    assert {a for c, a, _ in seen if c == "attention_block_export"} == {"export@aoti"}
    m = json.loads((example_corpus / "attention_block" / "manifest.json").read_text())
    assert next(s for s in m["input_sets"] if s["name"] == "scores")["method"] == "scores"
    assert "artifact" not in json.loads((example_corpus / "attention_block_export" / "manifest.json").read_text())


@pytest.mark.xdist_group("example_corpus")  # one worker exports the module's fixture once
def test_examples_through_pytest_ctest_and_report(example_corpus: Path, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pytest", f"--torchconform-corpus={example_corpus}", "-q",
                        "-p", "no:cacheprovider", "-o", "addopts="], capture_output=True, text=True, cwd=tmp_path,
                       timeout=600)
    n_pass, n_xfail = counts(example_corpus)
    assert n_xfail == 0 and r.returncode == 0 and f"{n_pass} passed" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(["ctest", "--test-dir", str(ROOT / "build"), "-R", "corpus_roundtrip", "-V"],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "TORCHCONFORM_CORPUS": str(example_corpus)})
    assert r.returncode == 0, r.stdout
    assert "residual_mlp__b16__cpu" in r.stdout and "attention_block_export__b5_s4__cpu" in r.stdout
    ok = [line for line in r.stdout.splitlines() if "[       OK ] Golden/RoundTrip.Verify/" in line]
    n_sets = sum(len(m["input_sets"]) for m in manifests(example_corpus).values())
    assert sum(line.split("(")[0].strip().endswith("__cpu") for line in ok) == n_sets, r.stdout[-2000:]
    r = tc("report", example_corpus, "--quiet")
    n_export = sum(1 for p in planned(example_corpus) if p["case"] == "attention_block_export")
    # An export-only case has no TorchScript artifact to agree with (it used to show "inf / inf").
    assert r.returncode == 0 and (f"| attention_block_export | export | yes | aoti | cpu | PASS {n_export} | - (no "
                                  "TorchScript artifact) |") in r.stdout, r.stdout


def test_cases_by_module_name(tmp_path: Path) -> None:
    r = tc("export", "--cases", "my_cases", "--case", "residual_mlp", "--out", tmp_path / "c", cwd=EXAMPLES.parent)
    assert r.returncode == 0, r.stderr
    assert [c["name"] for c in json.loads((tmp_path / "c" / "corpus.json").read_text())["cases"]] == ["residual_mlp"]


BAD = {
    "bad_mode": ("tc.declare('m', model=lambda: nn.Linear(4, 2), mode='trase', inputs={'a': (torch.ones(1, 4),)})",
                 "case 'm': unknown mode 'trase' (expected one of trace, script, hybrid, script_function, export)"),
    "signature": ("tc.declare('lin', model=lambda: nn.Linear(4, 2), mode='trace', "
                  "inputs={'two': (torch.ones(1, 4), torch.ones(1, 4))})",
                  "case 'lin': input set 'two' does not match forward(input: torch.Tensor) -> torch.Tensor: "
                  "too many positional arguments"),
    "trace_fails": ("class M(nn.Module):\n    def forward(self, x):\n        return {1, 2}\n"
                    "tc.declare('settrace', model=M, mode='trace', inputs={'a': (torch.ones(2),)})",
                    "case 'settrace': torch.jit.trace failed:"),
    "duplicate": ("tc.declare('twice', model=lambda: nn.Linear(4, 2), mode='script', "
                  "inputs={'a': (torch.ones(1, 4),)})\n"
                  "tc.declare('twice', model=lambda: nn.ReLU(), mode='script', inputs={'a': (torch.ones(1, 4),)})",
                  "case 'twice' is declared twice"),
    "unknown_method": ("tc.declare('meth', model=lambda: nn.Linear(4, 2), mode='script', "
                       "inputs={'a': tc.Inputs((torch.ones(1, 4),), method='encode')})",
                       "case 'meth': input set 'a' calls method 'encode', which the model does not have"),
    "hybrid_without_artifact": ("tc.declare('h', model=lambda: nn.ReLU(), mode='hybrid', "
                                "inputs={'a': (torch.ones(2),)})",
                                "case 'h': mode 'hybrid' needs artifact=<function building the TorchScript module>"),
    "nothing": ("x = 1", "it declares no cases"),
    "import_error": ("import not_a_module_anywhere", "importing it failed: ModuleNotFoundError"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_declaration_mistakes_name_the_case_and_the_problem(kind: str, tmp_path: Path) -> None:
    code, message = BAD[kind]
    path = tmp_path / f"{kind}.py"
    path.write_text("import torch\nfrom torch import nn\nimport torchconform as tc\n" + code + "\n")
    r = tc("export", "--cases", path, "--out", tmp_path / "out")
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_missing_cases_file_or_module(tmp_path: Path) -> None:
    r = tc_here("export", "--cases", tmp_path / "nope.py", "--out", tmp_path / "o")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = tc_here("export", "--cases", "no_such_pkg.cases", "--out", tmp_path / "o")
    assert r.returncode == 2 and "importing it failed: ModuleNotFoundError" in r.stderr


def test_xfail_with_a_torch_version_condition(tmp_path: Path, run_cli) -> None:
    """A mark applies only where the runner's LibTorch matches its condition; where it applies to a passing set it
    is an XPASS (strict), where it does not the set simply passes."""
    src = textwrap.dedent("""
        import torch
        from torch import nn
        import torchconform as tc
        tc.declare("lin", model=lambda: nn.Linear(4, 2), mode="script", inputs={
            "now": tc.Inputs((torch.ones(3, 4),), xfail=tc.XFail("marked for this runtime", torch=">=2.0")),
            "old": tc.Inputs((torch.ones(2, 4),), xfail=tc.XFail("marked for 1.x runtimes only", torch="<2.0")),
        })
    """)
    (tmp_path / "marks.py").write_text(src)
    assert tc("export", "--cases", tmp_path / "marks.py", "--out", tmp_path / "c").returncode == 0
    m = json.loads((tmp_path / "c" / "lin" / "manifest.json").read_text())
    assert m["input_sets"][0]["xfail"] == {"reason": "marked for this runtime", "torch": ">=2.0"}
    r = run_cli(tmp_path / "c")
    assert r.returncode == 1, r.stdout
    assert "XPASS lin/now" in r.stdout and "PASS  lin/old" in r.stdout


def test_tracer_warnings_of_user_cases_reach_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "warny.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        import torchconform as tc
        class M(nn.Module):
            def forward(self, x):
                if x.sum() > 0:  # the tracer records one branch and warns
                    return x * 2
                return x
        tc.declare("warny", model=M, mode="trace", inputs={"a": (torch.ones(2),)})
    """))
    assert tc("export", "--cases", tmp_path / "warny.py", "--out", tmp_path / "c").returncode == 0
    warnings = json.loads((tmp_path / "c" / "warny" / "manifest.json").read_text())["tracer_warnings"]
    assert len(warnings) == 1 and "Converting a tensor to a Python boolean" in warnings[0]["message"], warnings
