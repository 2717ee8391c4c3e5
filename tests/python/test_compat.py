"""torchconform compat: the classification of every result (typed: by verdict and error kind), the probe (which only
loads, calls and saves: the parent judges with the core), and the command end to end on
the pinned torch against two committed corpora made by ci/compat-fixture.sh: tests/data/compat/torch-1.13.1 (two
cases exported with Debian's PyTorch 1.13.1) and tests/data/compat/future-format (an artifact claiming a file format
from the future). Real versions: ci/upgrade.sh (torchconform upgrade, docs/upgrade.md); docs/compat.md keeps the
earlier matrix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TC, copy_corpus, rehash, runner_path
from torchconform import _core
from torchconform.tools import compat

OLD = ROOT / "tests" / "data" / "compat" / "torch-1.13.1"
FUTURE = ROOT / "tests" / "data" / "compat" / "future-format"


# ---- classification -----------------------------------------------------------------------------------------------
def _cpp(verdict: str, kind: str = "none", error: str = "", **kw) -> dict:
    return {"verdict": verdict, "error": error, "error_kind": kind, "mismatched": kw.get("mismatched", 0),
            "total": kw.get("total", 0), "max_abs": kw.get("max_abs", 0.0), "xfail_reason": kw.get("reason", "")}


@pytest.mark.parametrize("row,cls", [
    (_cpp("PASS"), compat.PASS),
    (_cpp("XFAIL", "load", "x", reason="torch.export needs 2.1"), compat.XFAIL),
    (_cpp("XPASS", reason="stale"), compat.XPASS),
    (_cpp("FAIL", mismatched=3, total=40, max_abs=1e-3), compat.DRIFT),
    (_cpp("ERROR", "load", "simple_cnn/artifact.pt: torch::jit::load failed: version 99 > 10"), compat.LOAD),
    (_cpp("ERROR", "missing_package", "c:export@aoti: no AOTInductor package ..."), compat.NOT_RUN),
    (_cpp("ERROR", "not_run", "c:export: not run: no runtime of this runner can run it"), compat.NOT_RUN),
    (_cpp("ERROR", "call", "c/s: forward raised: shape mismatch"), compat.CALL),
    # The kind decides, never the words: a call that raised about a file version is still a call failure...
    (_cpp("ERROR", "call", "c/s: forward raised: cannot open the file of version 3"), compat.CALL),
    # ...and a corpus problem worded like a call is still a load failure.
    (_cpp("ERROR", "corpus", "c/sets/a.expected.pt: forward raised: not a readable torch.save archive"), compat.LOAD),
    (_cpp("CRASH", "crash", "the case's process was killed by signal 11"), compat.CRASH),
    (_cpp("TIMEOUT", "timeout", "no result within 600 s"), compat.CRASH),
])
def test_cpp_rows(row, cls):
    assert compat.classify_cpp_row(row)["class"] == cls


@pytest.mark.parametrize("status,mark,cls", [
    ("pass", None, compat.PASS), ("pass", "stale", compat.XPASS), ("mismatch", None, compat.DRIFT),
    ("mismatch", "known drift", compat.XFAIL), ("load_error", None, compat.LOAD), ("load_error", "capture failed",
                                                                                  compat.XFAIL),
    ("call_error", None, compat.CALL), ("unsupported", None, compat.NOT_RUN),
    ("corpus_error", None, compat.LOAD), ("corpus_error", "a mark never covers a refused corpus", compat.LOAD),
])
def test_python_results(status, mark, cls):
    assert compat.classify_python(status, "detail", mark)["class"] == cls


def test_cell_headline_is_the_most_severe_class():
    rows = [{"class": compat.PASS, "id": "a", "detail": ""}, {"class": compat.DRIFT, "id": "b", "detail": "d"},
            {"class": compat.XFAIL, "id": "c", "detail": "x"}, {"class": compat.LOAD, "id": "d", "detail": "l"}]
    cell = compat.summarize(rows)
    assert cell["class"] == compat.LOAD
    assert cell["counts"] == {compat.PASS: 1, compat.DRIFT: 1, compat.XFAIL: 1, compat.LOAD: 1}
    assert cell["examples"][compat.DRIFT] == "b: d"
    assert compat.summarize(rows[:1])["class"] == compat.PASS
    assert compat.summarize([rows[0], rows[2]])["class"] == compat.PASS  # expected failures beside passes
    assert compat.summarize(rows[2:3])["class"] == compat.XFAIL


def test_process_failures():
    refused = subprocess.CompletedProcess([], 2, "", "torchconform-run: error: corpus.json: format 9 is newer\n")
    cell = compat.process_failure("runner", refused)
    assert cell["class"] == compat.LOAD and "format 9 is newer" in cell["examples"][compat.LOAD]
    killed = subprocess.CompletedProcess([], -11, "", "")
    assert compat.process_failure("runner", killed)["class"] == compat.CRASH


def test_runtime_spec_parsing():
    assert compat.Runtime.parse("2.14.1:/v/bin/python:/b/run") == compat.Runtime("2.14.1", "/v/bin/python", "/b/run")
    assert compat.Runtime.parse("1.13.1:/usr/bin/python3").runner == ""
    with pytest.raises(ValueError, match="NAME:PYTHON"):
        compat.Runtime.parse("2.14.1")


@pytest.mark.parametrize("version,spec,ok", [
    ("2.13.0+cpu", "<2.14", True), ("2.14.1+cu130", "<2.14", False), ("1.13.0a0", "<2.0", True),
    ("2.14.1", ">=2.13,<3", True), ("2.14", "==2.14.0", True), ("2.13.0", "!=2.13", False),
    ("2.13.0.1", "<2.13.0.2", True),
])
def test_version_conditions_are_the_runners(version, spec, ok):
    assert _core.version_matches(version, spec) is ok
    with pytest.raises(_core.CorpusError):
        _core.version_matches(version, "~=2.13")


def test_marks_apply_per_probed_version(tmp_path):
    corpus = copy_corpus(tmp_path, OLD)
    mpath = corpus / "process_outputs" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["input_sets"][0]["xfail"] = {"reason": "old torch only", "torch": "<2.0"}
    mpath.write_text(json.dumps(m, indent=2) + "\n")
    rehash(corpus, "process_outputs")
    opened = _core.Corpus.open(str(corpus))
    name = m["input_sets"][0]["name"]
    assert _core.applicable_mark(opened, "process_outputs", "", name, "1.13.1") == "old torch only"
    assert _core.applicable_mark(opened, "process_outputs", "", name, "2.13.0") is None
    # The variant's mark comes first (here: torch.export is absent in 1.13, recorded by that exporter).
    variant = next(v for v in m["variants"] if v.get("xfail"))
    reason = variant["xfail"]["reason"]
    assert _core.applicable_mark(opened, "process_outputs", variant["name"], "*", "2.13.0") == reason


def test_marks_apply_per_device(tmp_path, run_cli):
    """A mark with a device condition applies on that device type only: in the core's precedence, and in the runner,
    where a passing set marked for cpu is an XPASS on cpu (the control: the condition is read) and one marked for
    cuda stays a plain PASS on cpu (the built-in sampling sets rely on it)."""
    corpus = copy_corpus(tmp_path)
    mpath = corpus / "process_outputs" / "manifest.json"
    m = json.loads(mpath.read_text())
    first, second = m["input_sets"][0]["name"], m["input_sets"][1]["name"]
    m["input_sets"][0]["xfail"] = {"reason": "cuda only", "device": "cuda"}
    m["input_sets"][1]["xfail"] = {"reason": "cpu, old torch", "device": "cpu", "torch": "<2.0"}
    mpath.write_text(json.dumps(m, indent=2) + "\n")
    rehash(corpus, "process_outputs")
    opened = _core.Corpus.open(str(corpus))
    assert _core.applicable_mark(opened, "process_outputs", "", first, "2.13.0", "cuda") == "cuda only"
    assert _core.applicable_mark(opened, "process_outputs", "", first, "2.13.0", "cpu") is None
    assert _core.applicable_mark(opened, "process_outputs", "", first, "2.13.0") is None  # cpu unless told
    assert _core.applicable_mark(opened, "process_outputs", "", second, "1.13.1", "cpu") == "cpu, old torch"
    assert _core.applicable_mark(opened, "process_outputs", "", second, "2.13.0", "cpu") is None
    assert _core.applicable_mark(opened, "process_outputs", "", second, "1.13.1", "cuda") is None

    r = run_cli(corpus, "--case", "process_outputs")
    assert r.returncode == 0 and "XPASS" not in r.stdout and "XFAIL" not in r.stdout, r.stdout
    m["input_sets"][0]["xfail"]["device"] = "cpu"
    mpath.write_text(json.dumps(m, indent=2) + "\n")
    rehash(corpus, "process_outputs")
    r = run_cli(corpus, "--case", "process_outputs")
    assert r.returncode == 1 and f"XPASS process_outputs/{first} [cpu]" in r.stdout, r.stdout
    # A device the schema does not know is refused when the case is read, not ignored.
    m["input_sets"][0]["xfail"]["device"] = "tpu"
    mpath.write_text(json.dumps(m, indent=2) + "\n")
    rehash(corpus, "process_outputs")
    case = next(c for c in _core.Corpus.open(str(corpus)).cases if c.name == "process_outputs")
    assert "xfail.device" in case.error, case.error


def test_another_interpreter_finds_the_package_on_the_path_compat_gives_it():
    """What compat puts on another interpreter's PYTHONPATH holds the package (a move of compat.py broke it once:
    Debian's torch 1.13.1 then said "No module named 'torchconform'"; this interpreter found it anyway, through the
    editable install)."""
    assert (compat.EXPORT_ROOT / "torchconform" / "tools" / "compat_probe.py").is_file(), compat.EXPORT_ROOT


def test_package_key_for_another_torch_is_the_runners():
    sha = "ab" * 32
    assert _core.aoti_package_path("/c", sha, "cpu") == _core.aoti_package_path("/c", sha, "cpu",
                                                                                 _core.libtorch_version())
    assert _core.aoti_package_path("/c", sha, "cpu", "2.14.1+cu130") == f"/c/{sha[:32]}-torch2.14.1-cpu/model.pt2"


@pytest.mark.e2e
def test_the_probe_only_loads_calls_and_saves(tmp_path):
    """The probe's rows carry raw outputs, no verdict; judged here they agree with the runner on every result."""
    opened = _core.Corpus.open(str(OLD))
    rows, done = compat.probe(sys.executable, OLD, opened, 600, tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(set(r) == {"case", "artifact", "set", "status", "message", "outputs"} for r in rows)
    judged = {r["id"]: r["class"] for r in compat.judge_python(opened, torch.__version__, rows)}
    report = tmp_path / "r.json"
    subprocess.run([str(runner_path()), str(OLD), "--json", str(report), "--quiet"], capture_output=True, timeout=600)
    cpp = {compat._result_id(r["case"], r["artifact"].split("@")[0], r["input_set"]):
           compat.classify_cpp_row(r)["class"] for r in json.loads(report.read_text())["results"]}
    assert judged == {k: v for k, v in cpp.items() if k in judged} and len(judged) >= 17


# ---- end to end on the pinned torch ---------------------------------------------------------------------------------
def _compat(tmp_path: Path, *corpora: str) -> tuple[int, dict, str]:
    out = tmp_path / "out"
    args = [*TC, "compat", "--out", str(out), "--quiet",
            "--runtime", f"{torch.__version__.split('+')[0]}:{sys.executable}:{runner_path()}"]
    for c in corpora:
        args += ["--corpus", c]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900)
    data = json.loads((out / "compat.json").read_text()) if (out / "compat.json").exists() else {}
    return done.returncode, data, done.stdout + done.stderr


@pytest.mark.e2e
@pytest.mark.heavy
def test_old_corpus_on_the_pinned_torch(tmp_path):
    """TorchScript's backward compatibility: what Debian's 1.13.1 wrote loads and agrees on 2.13.0, from Python and
    C++; its torch.export variants are expected failures the 1.13.1 exporter recorded (no torch.export there)."""
    meta = json.loads((OLD / "corpus.json").read_text())
    assert meta["exported_with"]["torch"].startswith("1.13")
    code, data, text = _compat(tmp_path, f"1.13.1:{OLD}")
    assert code == 0, text
    cells = data["rows"][0]["cells"]
    for key, cell in cells.items():
        assert cell["class"] == compat.PASS, cell["examples"]
        # 17 TorchScript results pass (artifact, frozen, passes); optimize_for_inference's file does not load in
        # 1.13.1 either (4 sets), and the two torch.export captures were impossible there.
        assert cell["counts"] == {compat.PASS: 17, compat.XFAIL: 6}, key
        reasons = {r["detail"] for r in cell["results"] if r["class"] == compat.XFAIL}
        assert all("has no torch.export" in d or "optimize_for_inference" in d for d in reasons), reasons


@pytest.mark.e2e
@pytest.mark.heavy
def test_a_too_new_artifact_is_a_load_failure_with_its_message(tmp_path):
    """tests/data/compat/future-format: process_outputs whose artifact claims TorchScript file format 99."""
    code, data, text = _compat(tmp_path, f"future:{FUTURE}")
    assert code == 0, text  # a classified load failure is a finding, not a crash of the run
    for key, cell in data["rows"][0]["cells"].items():
        assert cell["class"] == compat.LOAD, (key, cell["counts"])
        assert "Attempted to read a PyTorch file with version 99" in cell["examples"][compat.LOAD], key
        assert cell["counts"] == {compat.LOAD: 5, compat.XFAIL: 1}  # the artifact on 5 sets; the capture mark
    assert "load failure" in (tmp_path / "out" / "compat.md").read_text()


@pytest.mark.e2e
@pytest.mark.heavy
def test_a_stale_version_mark_fails_the_run(tmp_path):
    corpus = copy_corpus(tmp_path, OLD)
    mpath = corpus / "process_outputs" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["input_sets"][0]["xfail"] = {"reason": "pretend 2.x breaks this", "torch": ">=2.0"}
    mpath.write_text(json.dumps(m, indent=2) + "\n")
    rehash(corpus, "process_outputs")
    code, data, text = _compat(tmp_path, f"stale:{corpus}")
    assert code == 1, text
    for cell in data["rows"][0]["cells"].values():
        assert cell["class"] == compat.XPASS and cell["counts"][compat.XPASS] == 1
    assert data["failing"] and "The run fails" in (tmp_path / "out" / "compat.md").read_text()
    # The same mark limited to old versions does not apply here: no XPASS, the run passes.
    m["input_sets"][0]["xfail"]["torch"] = "<2.0"
    mpath.write_text(json.dumps(m, indent=2) + "\n")
    rehash(corpus, "process_outputs")
    assert _compat(tmp_path, f"old-only:{corpus}")[0] == 0


@pytest.mark.e2e
def test_a_mark_covers_what_the_runner_lets_it_cover(monkeypatch):
    """"An xfail mark never covers a corpus error" has one home, the core (_core.mark_may_cover, which the runner's
    apply_xfail calls): the Python column's judgement follows it for every probe status."""
    from torchconform import _core

    for status, kind in compat.PROBE_ERROR_KIND.items():
        judged = compat.classify_python(status, "detail", "a known limitation")
        assert (judged["class"] in (compat.XFAIL, compat.XPASS)) == _core.mark_may_cover(kind), (status, judged)
    assert not _core.mark_may_cover("corpus") and not _core.mark_may_cover("not_run")
    assert _core.mark_may_cover("call") and _core.mark_may_cover("load")
    # The control: the Python face asks the core, it has no rule of its own.
    monkeypatch.setattr(_core, "mark_may_cover", lambda kind: True)
    assert compat.classify_python("corpus_error", "detail", "a known limitation")["class"] == compat.XFAIL


def test_compat_refuses_bad_arguments(tmp_path):
    from conftest import tc_here

    done = tc_here("compat", "--corpus", f"x:{tmp_path}", "--runtime", f"2:{sys.executable}")
    assert done.returncode == 2 and "no corpus.json there" in done.stderr
    done = tc_here("compat", "--corpus", f"x:{OLD}", "--runtime", "2:/no/python")
    assert done.returncode == 2 and "no interpreter /no/python" in done.stderr
    # A real interpreter without torch: a bare venv (no system site-packages).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    no_torch = tmp_path / "bare" / "bin" / "python"
    done = tc_here("compat", "--corpus", f"x:{OLD}", "--runtime", f"2:{no_torch}")
    assert done.returncode == 2 and "cannot import torch: ModuleNotFoundError" in done.stderr
    # --reexport re-exports the built-in cases: a reference corpus of other cases is refused (it was "load failure:
    # case missing from the re-export" with exit 0), pointing at `torchconform upgrade`.
    import hostile

    mine = hostile.single(tmp_path / "mine", "process_outputs", name="my_model")
    done = tc_here("compat", "--corpus", f"mine:{mine}", "--runtime", f"this:{sys.executable}", "--reexport",
                   "--out", tmp_path / "o")
    assert done.returncode == 2 and "holds others (my_model)" in done.stderr and "torchconform upgrade" in \
        done.stderr, done.stderr


@pytest.mark.e2e
def test_reexport_comparison_tells_bitwise_from_drift(tmp_path):
    from conftest import GOLDEN, perturbed_corpus

    same = compat.compare_corpora(GOLDEN, GOLDEN)
    total = same["counts"][compat.PASS]  # every golden of every set, the generated ones too
    assert same["class"] == compat.PASS and set(same["counts"]) == {compat.PASS} and same["bitwise"] == total > 22
    moved = compat.compare_corpora(GOLDEN, perturbed_corpus(tmp_path))
    assert moved["class"] == compat.DRIFT and moved["counts"] == {compat.PASS: total - 1, compat.DRIFT: 1}
    assert moved["bitwise"] == total - 1
    assert moved["examples"][compat.DRIFT].startswith("simple_cnn/b4_32x32: goldens differ: 1/40 elements")
    partial = copy_corpus(tmp_path / "p", GOLDEN)
    index = json.loads((partial / "corpus.json").read_text())
    index["cases"] = [c for c in index["cases"] if c["name"] != "full_model"]
    (partial / "corpus.json").write_text(json.dumps(index))
    missing = compat.compare_corpora(GOLDEN, partial)
    assert missing["class"] == compat.LOAD and "case missing from the re-export" in missing["examples"][compat.LOAD]


@pytest.mark.e2e
def test_aoti_packages_across_versions_are_run_by_the_other_runner_and_classified(tmp_path):
    """The cross-version cells: version A's packages under version B's cache key, run by B's runner on their results
    only. Here both "versions" are the pinned LibTorch (ci/upgrade.sh runs real ones): A's real package
    passes in B; a package that is not one (what an incompatible release's archive looks like to a loader) is a load
    failure with the loader's message, not a pass and not a crash."""
    from conftest import GOLDEN
    from torchconform.writing.aoti import default_cache, package_path

    opened = _core.Corpus.open(str(GOLDEN))
    po = next(c for c in opened.cases if c.name == "process_outputs")
    v = next(v for v in po.variants if v.kind == "exported_program")
    key = _core.program_key(opened, "process_outputs", v.name)
    real = package_path(default_cache(), key, "cpu")
    if not real.is_file():
        pytest.fail(f"no compiled package for process_outputs at {real}: ci/test.sh compiles golden/ first")
    bogus = tmp_path / "bogus.pt2"
    bogus.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: no AOTInductor archive in it
    runtimes = [compat.Runtime("a", sys.executable, str(runner_path()), torch.__version__),
                compat.Runtime("b", sys.executable, str(runner_path()), torch.__version__)]
    rec = {"case": "process_outputs", "variant": v.name, "sha256": v.sha256, "program_key": key, "status": "cached"}
    row = {"corpus": "golden", "cells": {f"{n}/cpp": {"runtimes": {"aoti": {"available": True}}} for n in "ab"},
           "aoti_compile": {"a": [{**rec, "package": str(real)}], "b": [{**rec, "package": str(bogus)}]}}
    cells = compat.aoti_across(row, runtimes, GOLDEN, 300, lambda m: None)
    assert set(cells) == {"a->a", "a->b", "b->a", "b->b"}
    n_sets = len(v.input_sets)
    for key in ("a->a", "a->b"):
        assert cells[key]["class"] == compat.PASS and cells[key]["counts"] == {compat.PASS: n_sets}, cells[key]
    for key in ("b->a", "b->b"):
        assert cells[key]["class"] == compat.LOAD and cells[key]["counts"] == {compat.LOAD: n_sets}, cells[key]
        assert f"process_outputs:{v.name}@aoti/" in cells[key]["examples"][compat.LOAD]
    # Across versions a crash (an older loader killed by a newer package) is a finding; on the diagonal it fails.
    crash = compat.summarize([{"class": compat.CRASH, "id": "x", "detail": "killed by signal 7"}])
    assert compat.across_failures([{"corpus": "g", "aoti_across": {"b->a": crash, "a->a": cells["a->a"]}}]) == []
    assert len(compat.across_failures([{"corpus": "g", "aoti_across": {"a->a": crash}}])) == 1
    row["cells"]["b/cpp"]["runtimes"]["aoti"]["available"] = False  # a runner without AOTInductor: no cells
    assert set(compat.aoti_across(row, runtimes, GOLDEN, 300, lambda m: None)) == {"a->a"}
