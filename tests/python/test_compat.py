"""torchconform compat: the classification of every result, the probe's comparison, and the command end to end on
the pinned torch against two committed corpora made by ci/compat-fixture.sh: tests/data/compat/torch-1.13.1 (two
cases exported with Debian's PyTorch 1.13.1) and tests/data/compat/future-format (an artifact claiming a file format
from the future). The full matrix over 1.13.1 / 2.13.0 / 2.14.1 is ci/compat.sh (docs/compat.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, copy_corpus, rehash, runner_path
from torchconform import compat
from torchconform.compat_probe import compare, mark_reason, version_matches

OLD = ROOT / "tests" / "data" / "compat" / "torch-1.13.1"
FUTURE = ROOT / "tests" / "data" / "compat" / "future-format"


# ---- classification -----------------------------------------------------------------------------------------------
def _cpp(verdict: str, error: str = "", **kw) -> dict:
    return {"verdict": verdict, "error": error, "mismatched": kw.get("mismatched", 0), "total": kw.get("total", 0),
            "max_abs": kw.get("max_abs", 0.0), "xfail_reason": kw.get("reason", "")}


@pytest.mark.parametrize("row,cls", [
    (_cpp("PASS"), compat.PASS),
    (_cpp("XFAIL", "x", reason="torch.export needs 2.1"), compat.XFAIL),
    (_cpp("XPASS", reason="stale"), compat.XPASS),
    (_cpp("FAIL", mismatched=3, total=40, max_abs=1e-3), compat.DRIFT),
    (_cpp("ERROR", "simple_cnn/artifact.pt: torch::jit::load failed: version 99 > 10"), compat.LOAD),
    (_cpp("ERROR", "c:export@aoti: no AOTInductor package for c/variants/export.pt2 ..."), compat.NOT_RUN),
    (_cpp("ERROR", "c/s: forward raised: shape mismatch"), compat.CALL),
    (_cpp("ERROR", "c/s: forward raised: cannot open the file of version 3"), compat.CALL),
    (_cpp("ERROR", "c/sets/a.expected.pt: not a readable torch.save archive: Unknown opcode"), compat.LOAD),
    (_cpp("ERROR", "c/artifact.pt: SHA-256 mismatch (manifest 12, file 34)"), compat.LOAD),
    (_cpp("CRASH", "the case's process was killed by signal 11"), compat.CRASH),
    (_cpp("TIMEOUT", "no result within 600 s"), compat.CRASH),
])
def test_cpp_rows(row, cls):
    assert compat.classify_cpp_row(row)["class"] == cls


def _py(status: str, mark: str | None = None, **kw) -> dict:
    return {"status": status, "xfail": mark, "message": kw.get("message", "m"), "mismatched": kw.get("n", 0),
            "total": 10, "max_abs": kw.get("max_abs", 0.0)}


@pytest.mark.parametrize("row,cls", [
    (_py("pass"), compat.PASS),
    (_py("pass", "stale"), compat.XPASS),
    (_py("mismatch", n=2, max_abs=0.5), compat.DRIFT),
    (_py("mismatch", "known drift"), compat.XFAIL),
    (_py("load_error", message="RuntimeError: version 99"), compat.LOAD),
    (_py("load_error", "capture failed"), compat.XFAIL),
    (_py("call_error"), compat.CALL),
    (_py("unsupported"), compat.NOT_RUN),
])
def test_python_rows(row, cls):
    assert compat.classify_python_row(row)["class"] == cls


def test_drift_detail_names_count_and_size():
    d = compat.classify_python_row(_py("mismatch", n=2, max_abs=0.5, message="$: 2/10 elements mismatched"))
    assert d["detail"].startswith("2/10 elements, max abs 0.5")


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
])
def test_version_conditions_match_the_runner(version, spec, ok):
    assert version_matches(version, spec) is ok
    assert mark_reason({"reason": "r", "torch": spec}, version) == ("r" if ok else None)


def test_probe_package_path_is_the_runners():
    from torchconform import _core
    from torchconform.compat_probe import package_path

    sha = "ab" * 32
    for device in ("cpu", "cuda"):
        assert str(package_path(Path("/c"), sha, _core.libtorch_version(), device)) == \
            _core.aoti_package_path("/c", sha, device)


def test_probe_compare():
    e = (torch.tensor([1.0, 2.0, float("nan")]), [1, 2], None)
    assert compare(e, (e[0].clone(), [1, 2], None), {"default": {"mode": "allclose"}})[0] == 0
    n, total, max_abs, first = compare(e, (torch.tensor([1.0, 2.5, float("nan")]), [1, 2], None), {})
    assert (n, max_abs) == (1, 0.5) and first.startswith("$[0]")
    assert compare(e, (e[0], [1, 3], None), {})[0] == 1
    assert compare(e, (e[0], [1, 2]), {})[3] == "structure differs: 6 vs 5 nodes"
    near = torch.tensor([1.0 + 1e-7, 2.0, float("nan")])
    assert compare(e, (near, [1, 2], None), {"default": {"mode": "exact"}})[0] == 1
    assert compare(e, (near, [1, 2], None), {"default": {"mode": "ulp", "max_ulp": 1}})[0] == 0


# ---- end to end on the pinned torch ---------------------------------------------------------------------------------
def _compat(tmp_path: Path, *corpora: str) -> tuple[int, dict, str]:
    out = tmp_path / "out"
    args = [sys.executable, "-m", "torchconform", "compat", "--out", str(out), "--quiet",
            "--runtime", f"{torch.__version__.split('+')[0]}:{sys.executable}:{runner_path()}"]
    for c in corpora:
        args += ["--corpus", c]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900)
    data = json.loads((out / "compat.json").read_text()) if (out / "compat.json").exists() else {}
    return done.returncode, data, done.stdout + done.stderr


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


def test_a_too_new_artifact_is_a_load_failure_with_its_message(tmp_path):
    """tests/data/compat/future-format: process_outputs whose artifact claims TorchScript file format 99."""
    code, data, text = _compat(tmp_path, f"future:{FUTURE}")
    assert code == 0, text  # a classified load failure is a finding, not a crash of the run
    for key, cell in data["rows"][0]["cells"].items():
        assert cell["class"] == compat.LOAD, (key, cell["counts"])
        assert "Attempted to read a PyTorch file with version 99" in cell["examples"][compat.LOAD], key
        assert cell["counts"] == {compat.LOAD: 5, compat.XFAIL: 1}  # the artifact on 5 sets; the capture mark
    assert "load failure" in (tmp_path / "out" / "compat.md").read_text()


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


def test_compat_refuses_bad_arguments(tmp_path):
    done = subprocess.run([sys.executable, "-m", "torchconform", "compat", "--corpus", f"x:{tmp_path}",
                           "--runtime", f"2:{sys.executable}"], capture_output=True, text=True)
    assert done.returncode == 2 and "no corpus.json there" in done.stderr
    done = subprocess.run([sys.executable, "-m", "torchconform", "compat", "--corpus", f"x:{OLD}",
                           "--runtime", "2:/no/python"], capture_output=True, text=True)
    assert done.returncode == 2 and "no interpreter /no/python" in done.stderr
    # A real interpreter without torch: a bare venv (no system site-packages).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    no_torch = tmp_path / "bare" / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "torchconform", "compat", "--corpus", f"x:{OLD}",
                           "--runtime", f"2:{no_torch}"], capture_output=True, text=True)
    assert done.returncode == 2 and "cannot import torch: ModuleNotFoundError" in done.stderr


def test_reexport_comparison_tells_bitwise_from_drift(tmp_path):
    from conftest import GOLDEN, perturbed_corpus

    same = compat.compare_corpora(GOLDEN, GOLDEN)
    assert same["class"] == compat.PASS and same["bitwise"] == same["counts"][compat.PASS] == 22
    moved = compat.compare_corpora(GOLDEN, perturbed_corpus(tmp_path))
    assert moved["class"] == compat.DRIFT and moved["counts"] == {compat.PASS: 21, compat.DRIFT: 1}
    assert moved["bitwise"] == 21
    assert moved["examples"][compat.DRIFT].startswith("simple_cnn/b4_32x32: goldens differ: 1/40 elements")
    partial = copy_corpus(tmp_path / "p", GOLDEN)
    index = json.loads((partial / "corpus.json").read_text())
    index["cases"] = [c for c in index["cases"] if c["name"] != "full_model"]
    (partial / "corpus.json").write_text(json.dumps(index))
    missing = compat.compare_corpora(GOLDEN, partial)
    assert missing["class"] == compat.LOAD and "case missing from the re-export" in missing["examples"][compat.LOAD]
