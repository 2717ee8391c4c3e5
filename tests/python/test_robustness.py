"""A broken corpus never comes out green and a bad file or a crashing case never takes the run down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import GOLDEN, TC, compiled, copy_corpus, counts, manifests, planned, rehash, sha256, tc
from torchconform import Built, Case, InputSet
from torchconform.authoring.registry import select
from torchconform.writing.writer import write_corpus

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end

N_PASS, N_XFAIL = counts()
N_FULL = sum(1 for r in planned() if r["case"] == "full_model")  # its results: all artifacts, all sets
N_CNN = sum(1 for r in planned() if r["case"] == "simple_cnn")


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]], ids=["sequential", "jobs2"])
def test_crash_in_one_case_is_reported_and_the_others_run(runner: Path, jobs: list[str]) -> None:
    for fault, signal_name in (("segv", "Segmentation fault"), ("abort", "Aborted")):
        env = {**os.environ, "TORCHCONFORM_FAULT_INJECT": f"full_model:{fault}"}
        r = subprocess.run([str(runner), GOLDEN, "--quiet", *jobs], capture_output=True, text=True, env=env,
                           timeout=300)
        assert r.returncode == 2, r.stdout + r.stderr
        crashed = [line for line in r.stdout.splitlines() if line.startswith("CRASH")]
        assert len(crashed) == N_FULL and all("full_model/" in line for line in crashed)
        assert signal_name in crashed[0] and "while running full_model/greedy_trace_example" in crashed[0]
        assert "not run (the process ended in full_model/greedy_trace_example)" in crashed[-1]
        assert r.stdout.count("\nPASS  ") == N_PASS - N_FULL
        assert f"summary: {N_PASS - N_FULL} passed, 0 failed, 0 errors, {N_FULL} crashed," in r.stdout
    # The Python front end goes through the same isolation.
    r = tc("verify", GOLDEN, "--quiet", *jobs, env={"TORCHCONFORM_FAULT_INJECT": "simple_cnn:segv"})
    assert r.returncode == 2 and r.stdout.count("\nCRASH simple_cnn") == N_CNN and "PASS  full_model/" in r.stdout


def spin(x: torch.Tensor) -> torch.Tensor:
    while bool(x.sum() > -1.0):  # never false: |x| + 1 only grows
        x = x.abs() + 1.0
    return x


def build_spinning(seed: int) -> Built:
    return Built(eager=lambda x: x, artifact=torch.jit.script(spin), model="spin(x)",
                 input_sets=[InputSet("forever", (torch.zeros(3),), "loops forever in TorchScript")])


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]], ids=["sequential", "jobs2"])
def test_a_hanging_case_times_out_and_the_others_run(runner: Path, tmp_path: Path, jobs: list[str]) -> None:
    cases = [Case("spinning", "script_function", "a TorchScript loop that never ends", build_spinning, 1),
             *select(["process_outputs"])]
    write_corpus(tmp_path / "c", cases, log=lambda m: None)
    t0 = time.monotonic()
    r = subprocess.run([str(runner), tmp_path / "c", "--timeout", "3", "--quiet", *jobs], capture_output=True,
                       text=True, timeout=120)
    assert time.monotonic() - t0 < 30
    assert r.returncode == 2, r.stdout + r.stderr
    assert "TIMEOUT spinning/forever [cpu] spinning: no result within the case time limit of 3 s" in r.stdout
    assert r.stdout.count("\nPASS  process_outputs/") == len(manifests()["process_outputs"]["input_sets"])


def test_xfail_marks_are_strict(run_cli, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    path = corpus / "simple_cnn" / "sets" / "b4_32x32.expected.pt"
    expected = torch.load(path, weights_only=True)
    expected[0, 0] += 1.0
    torch.save(expected, path)
    mpath = corpus / "simple_cnn" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["input_sets"][1]["xfail"] = {"reason": "golden moved on purpose"}
    mpath.write_text(json.dumps(m))
    rehash(corpus, "simple_cnn")
    r = run_cli(corpus, "--case", "simple_cnn")
    assert r.returncode == 0, r.stdout
    assert "XFAIL simple_cnn/b4_32x32" in r.stdout and "[xfail: golden moved on purpose]" in r.stdout
    m["input_sets"][2]["xfail"] = {"reason": "stale mark"}  # b2_48x40 passes: the mark must not rot silently
    mpath.write_text(json.dumps(m))
    rehash(corpus, "simple_cnn")
    r = run_cli(corpus, "--case", "simple_cnn")
    # The set's mark covers every artifact run on the set that has no mark of its own.
    n = sum(1 for p in planned() if (p["case"], p["set"]) == ("simple_cnn", "b2_48x40") and not p["xfail"])
    assert r.returncode == 1 and "XPASS simple_cnn/b2_48x40" in r.stdout and f"{n} xpassed" in r.stdout


def test_variant_xfail_marks_are_strict(run_cli, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    mpath = corpus / "simple_cnn" / "manifest.json"
    m = json.loads(mpath.read_text())
    frozen = next(v for v in m["variants"] if v["name"] == "frozen")
    frozen["xfail"] = {"reason": "stale variant mark"}
    mpath.write_text(json.dumps(m))
    rehash(corpus, "simple_cnn")
    r = run_cli(corpus, "--case", "simple_cnn")
    n_sets = len(m["input_sets"])
    assert r.returncode == 1, r.stdout
    assert r.stdout.count("\nXPASS simple_cnn:frozen/") == n_sets and f"{n_sets} xpassed" in r.stdout
    # A capture that failed at export must carry its expected-failure mark: without it the manifest is refused.
    m = json.loads(mpath.read_text())
    m["variants"] = [v for v in m["variants"] if v["name"] != "frozen"]
    dpath = corpus / "dynamic_router" / "manifest.json"
    d = json.loads(dpath.read_text())
    next(v for v in d["variants"] if "error" in v).pop("xfail")
    dpath.write_text(json.dumps(d))
    rehash(corpus, "dynamic_router")
    r = run_cli(corpus, "--case", "dynamic_router")
    assert r.returncode == 2
    assert "variant 'export': no 'file', and not a failed capture ('error' with an 'xfail' mark)" in r.stdout


def test_exporter_writes_xfail_marks(run_cli, tmp_path: Path) -> None:
    (base,) = select(["process_outputs"])

    def marked(seed: int) -> Built:
        built = base.build(seed)
        built.input_sets[0].xfail = "documented: this set is expected to fail"
        return built

    write_corpus(tmp_path / "c", [Case("marked", "script_function", "xfail on a passing set", marked, base.seed)],
                 log=lambda m: None)
    r = run_cli(compiled(tmp_path / "c"))
    assert r.returncode == 1 and "XPASS marked/top1_no_labels" in r.stdout


@pytest.mark.heavy
def test_killed_export_leaves_the_previous_corpus_intact(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    assert tc("export", "--out", out, "--case", "process_outputs", "--quiet").returncode == 0
    before = {p.relative_to(out): sha256(p) for p in out.rglob("*") if p.is_file()}
    proc = subprocess.Popen([*TC, "export", "--out", str(out), "--force"],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "[1/4] simple_cnn ..." : the export is under way, the corpus half written
    assert line.startswith("[1/"), line
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert {p.relative_to(out): sha256(p) for p in out.rglob("*") if p.is_file()} == before
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "corpus")
    assert len(leftovers) == 2 and leftovers[0].startswith(".corpus.export-"), leftovers  # its journal...
    assert leftovers[1].startswith(".corpus.partial-"), leftovers  # ...and the partial corpus it names
    r = tc("export", "--out", out, "--case", "process_outputs", "--force")
    assert r.returncode == 0 and "removed .corpus.partial-" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


@pytest.mark.heavy
def test_killed_between_renames_is_recovered(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    assert tc("export", "--out", out, "--case", "process_outputs", "--quiet").returncode == 0
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = finished.pid  # a pid that is no longer running
    # What an export killed between its two renames leaves: its journal, the old corpus moved aside.
    (tmp_path / f".corpus.export-{dead}.json").write_text(json.dumps(
        {"out": "corpus", "partial": f".corpus.partial-{dead}", "old": f".corpus.old-{dead}"}))
    out.rename(tmp_path / f".corpus.old-{dead}")
    r = tc("export", "--out", out, "--case", "process_outputs")
    assert r.returncode == 2 and "already exists" in r.stderr  # the old corpus came back and is protected
    assert "restored" in r.stderr and (out / "corpus.json").is_file()
