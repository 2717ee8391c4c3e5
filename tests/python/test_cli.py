"""The `torchconform` command (verify / report through the bindings) and the pytest plugin, against the C++ CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (
    GOLDEN,
    copy_corpus,
    counts,
    manifests,
    perturbed_corpus,
    perturbed_failures,
    planned,
    rehash,
    tc,
    tc_here,
)

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end

N_PASS, N_XFAIL = counts()
N_PERTURBED = perturbed_failures()


def lines(stdout: str) -> list[str]:
    """Output lines without their timings, which differ run to run."""
    return [re.sub(r" \([0-9.e+-]+ m?s\)$", "", re.sub(r"[0-9.e+-]+ s\)$", "s)", line))
            for line in stdout.splitlines()]


def truncated(tmp_path: Path) -> Path:
    corpus = copy_corpus(tmp_path)
    art = corpus / "dynamic_router" / "artifact.pt"
    art.write_bytes(art.read_bytes()[:1000])
    rehash(corpus, "dynamic_router")
    return corpus


@pytest.mark.heavy
def test_verify_prints_what_torchconform_run_prints(run_cli, tmp_path: Path) -> None:
    for corpus, code in [(GOLDEN, 0), (perturbed_corpus(tmp_path / "p"), 1), (truncated(tmp_path / "t"), 2)]:
        py = tc("verify", corpus, "--quiet", "--threads", "1")
        cpp = run_cli(corpus, "--quiet", "--threads", "1")
        assert py.returncode == cpp.returncode == code, (py.stdout, py.stderr)
        assert lines(py.stdout) == lines(cpp.stdout)
        assert len(lines(py.stdout)) >= N_PASS + N_XFAIL + 2
        if code == 1:
            assert "FAIL  simple_cnn/b4_32x32" in py.stdout


def test_verify_errors_and_progress(tmp_path: Path) -> None:
    r = tc_here("verify", tmp_path / "nowhere")
    assert r.returncode == 2 and "not a corpus directory" in r.stderr
    r = tc_here("verify", GOLDEN, "--device", "tpu")
    assert r.returncode == 2 and "--device must be cpu, cuda or all" in r.stderr
    r = tc_here("verify", GOLDEN, "--case", "nope")
    assert r.returncode == 2 and "matches no case" in r.stderr
    r = tc("verify", GOLDEN, "--case", "simple_cnn", "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml")
    assert r.returncode == 0
    assert re.search(r"^\[1/1\] simple_cnn on cpu \(elapsed [0-9.e+-]+ s\)$", r.stderr, re.M), r.stderr
    assert (tmp_path / "r.json").is_file() and (tmp_path / "r.xml").is_file()


def test_report(tmp_path: Path) -> None:
    r = tc("report", GOLDEN, "--out", tmp_path / "report.md", "--quiet")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# torchconform report")
    assert (f"**PASS**: {N_PASS} passed, 0 failed, 0 errors, 0 crashed, 0 timed out, {N_XFAIL} xfailed, "
            "0 xpassed." in text)
    for name, m in manifests().items():
        n_artifacts = len({r["artifact"] for r in planned() if r["case"] == name})
        assert re.search(rf"^\| {name} \| {m['mode']} \| {len(m['input_sets'])} \| {n_artifacts} \| PASS", text,
                         re.M), name
        assert f"## {name} ({m['mode']})" in text
    assert "hazard **spec\\_trace\\_in\\_training\\_mode**" in text  # corpus text is Markdown-escaped
    # The migration section: every model has a torch.export outcome.
    assert "## TorchScript → torch.export migration" in text
    assert re.search(r"^\| dynamic_router \| export \| no: GuardOnDataDependentSymNode", text, re.M)
    n_export = sum(1 for p in planned() if (p["case"], p["artifact"]) == ("simple_cnn", "export@aoti"))
    assert re.search(rf"^\| simple_cnn \| export \| yes \| aoti \| cpu \| PASS {n_export} \|", text, re.M)
    assert "nativert: no (" in text
    bad = tc("report", perturbed_corpus(tmp_path), "--quiet")
    assert bad.returncode == 1
    assert "**FAIL**" in bad.stdout and "| TorchScript | b4_32x32 | cpu | FAIL |" in bad.stdout
    assert "| export@aoti | b4_32x32 | cpu | FAIL |" in bad.stdout and "worst at \\[2, 7\\]" in bad.stdout


def test_migration_has_the_executorch_programs() -> None:
    """The migration table's ExecuTorch column: each program lowered from an exported program (export --executorch)
    gets its verdicts, its distance from TorchScript and its times, or why ExecuTorch could not lower it."""
    from torchconform.faces.report import migration, migration_markdown

    def row(artifact: str, verdict: str, max_abs: float | None = None) -> dict:
        return {"device": "cpu", "artifact": artifact, "input_set": "s", "verdict": verdict, "error": "",
                "load_seconds": 0.5, "first_call_seconds": 0.25, "steady_seconds": 0.125,
                "vs_artifact": None if max_abs is None else {"max_abs": max_abs, "max_ulp": 7}}

    manifests = {"m": {"artifact": {}, "variants": [
        {"name": "export", "kind": "exported_program", "transform": "t", "file": "a", "runtimes": ["aoti"]},
        {"name": "export_et", "kind": "executorch_program", "transform": "t", "file": "b", "lowered_from": "export"},
        {"name": "export_et_xnnpack", "kind": "executorch_program", "transform": "t", "error": "Boom|x",
         "lowered_from": "export"},
        {"name": "other_et", "kind": "executorch_program", "transform": "t", "file": "c", "lowered_from": "other"}]}}
    rows = {"m": [row("", "PASS"), row("export@aoti", "PASS", 0.0), row("export_et@executorch", "FAIL", 0.5)]}
    (entry,) = migration(manifests, rows)
    runtimes = entry["devices"]["cpu"]["runtimes"]
    assert list(runtimes) == ["aoti", "executorch (export_et)", "executorch (export_et_xnnpack)"]  # not other_et
    et = runtimes["executorch (export_et)"]
    assert et["verdicts"] == {"FAIL": 1} and et["max_abs_vs_torchscript"] == 0.5 and et["timing"]["load_s"] == 0.5
    assert runtimes["executorch (export_et_xnnpack)"] == {"ran": False, "not_lowered": "Boom|x"}
    assert [e["lowered"] for e in entry["executorch"]] == [True, False]
    text = "\n".join(migration_markdown([entry], {}))
    assert "| m | export | yes | executorch (export\\_et) | cpu | FAIL 1 | 0.5 / 7 | 500 / 500 |" in text, text
    assert "not run (ExecuTorch cannot lower it: Boom\\|x)" in text


def test_report_from_results_file(golden_run, tmp_path: Path) -> None:
    assert golden_run.done.returncode == 0
    r = tc("report", GOLDEN, "--results", golden_run.json)
    assert r.returncode == 0 and "**PASS**" in r.stdout
    r = tc("report", GOLDEN, "--results", tmp_path / "missing.json")
    assert r.returncode == 2 and "missing.json" in r.stderr


@pytest.mark.heavy
def test_pytest_plugin_one_test_per_case_and_set(tmp_path: Path) -> None:
    def plugin_run(corpus: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", f"--torchconform-corpus={corpus}", "-v",
                               "-p", "no:cacheprovider", "-o", "addopts="], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300)

    r = plugin_run(GOLDEN)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{N_PASS} passed, {N_XFAIL} xfailed" in r.stdout
    assert re.search(r"simple_cnn\[b4_32x32-cpu\] PASSED", r.stdout), r.stdout
    assert re.search(r"simple_cnn:export@aoti\[b4_32x32-cpu\] PASSED", r.stdout), r.stdout
    assert re.search(r"dynamic_router:export\[\*-cpu\] XFAIL", r.stdout), r.stdout
    r = plugin_run(perturbed_corpus(tmp_path))
    assert r.returncode == 1
    assert f"{N_PERTURBED} failed, {N_PASS - N_PERTURBED} passed" in r.stdout
    assert re.search(r"simple_cnn\[b4_32x32-cpu\] FAILED", r.stdout)
    assert re.search(r"simple_cnn:frozen\[b4_32x32-cpu\] FAILED", r.stdout)
    assert "worst at [2, 7]" in r.stdout
    r = plugin_run(tmp_path / "nowhere")
    assert r.returncode == 4 and "not a corpus directory" in r.stderr


def test_a_forked_command_is_the_command_a_fresh_interpreter_runs(tmp_path: Path) -> None:
    """``tc()`` runs the command as a fork of the pytest worker's fork server (forkserver.py: torch imported once);
    the fork must be the command. A refusal (exit 2), a run that passes (0) and one that fails (1) give the same exit
    status, stdout and stderr (timings aside) forked and in a fresh interpreter, and a command past its time limit is
    killed and raises TimeoutExpired both ways."""
    import os

    from forkserver import SERVER_FOR_THIS_WORKER

    assert SERVER_FOR_THIS_WORKER.why_fresh(dict(os.environ)) == ""  # (the default tier's time depends on it)
    bad = perturbed_corpus(tmp_path)
    runs = {}
    for args in ([tmp_path / "nope"], [GOLDEN, "--case", "process_outputs", "--no-isolate"],
                 [bad, "--case", "simple_cnn", "--no-isolate"]):
        fork, fresh = tc("verify", *args), tc("verify", *args, fresh=True)
        runs[fork.returncode] = fork
        assert (fork.returncode, lines(fork.stdout), lines(fork.stderr)) == \
               (fresh.returncode, lines(fresh.stdout), lines(fresh.stderr)), (fork, fresh)
    assert set(runs) == {0, 1, 2}
    # Control: the comparison sees a difference where there is one.
    assert lines(runs[0].stdout) != lines(runs[1].stdout)
    for fresh in (False, True):
        with pytest.raises(subprocess.TimeoutExpired):
            tc("verify", GOLDEN, timeout=0.5, fresh=fresh)
    # What torch reads while it is imported is never forked: another OMP_NUM_THREADS needs a fresh interpreter.
    assert SERVER_FOR_THIS_WORKER.why_fresh({**os.environ, "OMP_NUM_THREADS": "1"}) == "OMP_NUM_THREADS changed"
    assert SERVER_FOR_THIS_WORKER.why_fresh({**os.environ, "TORCHCONFORM_AOTI_CACHE": str(tmp_path)}) == ""
