"""ExecuTorch end to end: export --bundled, the C++ runner's ExecuTorch runtime, and ExecuTorch's own bundled-program
check agreeing with it (torchconform bundle-check), with the negative controls that prove the agreement can fail.

Needs the executorch package and a runner built with ExecuTorch's runtime: ci/executorch.sh sets both up and runs
this file with TORCHCONFORM_REQUIRE_EXECUTORCH=1, which turns the skip below into a failure. The default CI has
neither (the environment is ~6 GB); it runs the tests of bundle-check's refusals in test_hostile.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import ROOT, rehash, runner_path, tc
from torchconform.safeload import load_data


def _why_not() -> str:
    from torchconform.writing.executorch import available

    missing = available()
    if missing:
        return missing
    r = subprocess.run([str(runner_path()), str(ROOT / "golden"), "--result", "process_outputs/*", "--quiet"],
                       capture_output=True, text=True)
    return "" if "executorch yes" in r.stdout else f"{runner_path()} has no ExecuTorch runtime"


_MISSING = _why_not()
if _MISSING:
    if os.environ.get("TORCHCONFORM_REQUIRE_EXECUTORCH") == "1":
        raise RuntimeError(f"TORCHCONFORM_REQUIRE_EXECUTORCH=1 but {_MISSING}")
    pytest.skip(f"ExecuTorch end to end needs ci/executorch.sh's environment: {_MISSING}", allow_module_level=True)


def check(corpus: Path, tmp: Path, *extra: str) -> tuple[int, dict, str]:
    out = tmp / "bundle-check.json"
    r = tc("bundle-check", corpus, "--runner", runner_path(), "--json", out, *extra)
    return r.returncode, json.loads(out.read_text()) if out.is_file() else {}, r.stdout + r.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """simple_cnn (its program bundles: tensor in, tensor out) and process_outputs (its List[int] output cannot be
    bundled; its XNNPACK lowering fails), exported once with --bundled."""
    out = tmp_path_factory.mktemp("et") / "corpus"
    # (the written sets only: the generated ones past batch 15 are the ExecuTorch finding ci/executorch.sh checks)
    r = tc("export", "--bundled", "--no-bound-sets", "--case", "simple_cnn", "--case", "process_outputs", "--out", out,
           "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def _variants(corpus: Path, case: str) -> dict[str, dict]:
    m = json.loads((corpus / case / "manifest.json").read_text())
    return {v["name"]: v for v in m["variants"]}


def test_export_bundled_writes_bundles_and_says_why_not(corpus: Path) -> None:
    v = _variants(corpus, "simple_cnn")
    for name in ("export_et", "export_et_xnnpack"):
        b = v[name]["bundled"]
        assert (corpus / "simple_cnn" / b["file"]).is_file() and b["file"].endswith(".bpte")
        assert b["input_sets"] == ["trace_example", "b4_32x32", "b2_48x40", "b1_33x33"]
        assert (b["rtol"], b["atol"]) == (1.3e-6, 1e-5)  # float32's assert_close defaults, as the comparator
        assert v[name]["lowered_from"] == "export"
    p = _variants(corpus, "process_outputs")
    assert "Only tensor outputs" in p["export_et"]["bundled"]["error"]
    assert "bundled" not in p["export_et_xnnpack"] and "file" not in p["export_et_xnnpack"]  # not lowered at all


def test_executorch_check_agrees_with_the_runner(corpus: Path, tmp_path: Path) -> None:
    code, doc, text = check(corpus, tmp_path)
    assert code == 0, text
    assert len(doc["results"]) == 8 and all(r["status"] == "agree" and r["executorch"] for r in doc["results"])
    assert {r["torchconform"] for r in doc["results"]} == {"PASS"}
    assert len(doc["not_bundled"]) == 2 and "8 agree (8 pass in both, 0 fail in both)" in text


def _perturb(path: Path) -> None:
    expected = load_data(path)
    expected[2, 7] += 1e-3
    torch.save(expected, path)


def _rebundle(corpus: Path, case: str) -> None:
    """Re-sign the case, then re-write every bundle of it from the corpus's files as they are now (export's own code
    path), then re-sign the bundles."""
    from torchconform.writing.executorch import bundle_bytes, bundle_cases

    rehash(corpus, case)
    m = json.loads((corpus / case / "manifest.json").read_text())
    read = lambda rel: (corpus / case / rel).read_bytes()  # noqa: E731 - (the test's own fresh copy)
    for v in m["variants"]:
        if "file" in v.get("bundled", {}):
            data = bundle_bytes(read(v["file"]), bundle_cases(read, v, m["input_sets"]))
            (corpus / case / v["bundled"]["file"]).write_bytes(data)
    rehash(corpus, case)


def test_a_perturbed_golden_fails_in_both(corpus: Path, tmp_path: Path) -> None:
    """The golden of simple_cnn/b4_32x32 moved by 1e-3 in the corpus and in the bundles: both checks fail exactly
    there, for both programs, and still agree everywhere."""
    bad = shutil.copytree(corpus, tmp_path / "perturbed")
    _perturb(bad / "simple_cnn" / "sets" / "b4_32x32.expected.pt")
    _rebundle(bad, "simple_cnn")
    code, doc, text = check(bad, tmp_path)
    assert code == 0, text
    failed = sorted(r["result"] for r in doc["results"] if not r["executorch"])
    assert failed == ["simple_cnn:export_et@executorch/b4_32x32", "simple_cnn:export_et_xnnpack@executorch/b4_32x32"]
    assert all(r["torchconform"] == ("FAIL" if r["result"] in failed else "PASS") for r in doc["results"])
    assert "6 pass in both, 2 fail in both" in text


def test_a_stale_bundle_is_not_checked(corpus: Path, tmp_path: Path) -> None:
    """Only the bundles' golden perturbed (the corpus's untouched, everything re-signed): the bundles are no longer
    the corpus's program, input sets and goldens. bundle-check rebuilds them from the corpus, sees the difference and
    checks nothing of them (exit 1), whatever ExecuTorch would say."""
    bad = shutil.copytree(corpus, tmp_path / "stale")
    golden = bad / "simple_cnn" / "sets" / "b4_32x32.expected.pt"
    kept = golden.read_bytes()
    _perturb(golden)
    _rebundle(bad, "simple_cnn")
    golden.write_bytes(kept)
    rehash(bad, "simple_cnn")
    code, doc, text = check(bad, tmp_path)
    assert code == 1, text
    assert all(r["status"] == "error" and "the bundle is not this corpus's" in r["executorch_message"]
               for r in doc["results"]) and len(doc["results"]) == 8, text


def test_a_disagreement_fails_the_check(corpus: Path, tmp_path: Path) -> None:
    """The runner's verdicts flipped to FAIL in a report given with --results, where ExecuTorch passes: bundle-check
    must say DISAGREE and exit 1 (the agreement is checked, not assumed)."""
    report = tmp_path / "report.json"
    r = subprocess.run([str(runner_path()), str(corpus), "--result", "simple_cnn:*@executorch/*", "--quiet",
                        "--json", str(report)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:]
    doc = json.loads(report.read_text())
    for row in doc["results"]:
        row["verdict"] = "FAIL"
    report.write_text(json.dumps(doc))
    code, out, text = check(corpus, tmp_path, "--results", str(report))
    assert code == 1, text
    disagree = [x for x in out["results"] if x["status"] == "DISAGREE"]
    assert disagree and all(x["executorch"] and x["torchconform"] == "FAIL" for x in disagree), text
    assert f"{len(disagree)} disagree" in text


def test_a_bundle_tolerance_that_is_not_the_cases_is_not_checked(corpus: Path, tmp_path: Path) -> None:
    """The bundles' rtol/atol set to 0 in the manifest (re-signed): they are not what the case's tolerance gives for
    its goldens, so the bundle is not checked (every result an error, exit 1), never checked at the manifest's word.
    The tolerance each result was checked at is printed."""
    code, _, text = check(corpus, tmp_path)
    assert code == 0 and "at rtol=1.3e-06 atol=1e-05" in text, text  # the control: printed, not LOOSENED
    bad = shutil.copytree(corpus, tmp_path / "zero")
    m = json.loads((bad / "simple_cnn" / "manifest.json").read_text())
    for v in m["variants"]:
        if "file" in v.get("bundled", {}):
            v["bundled"].update(rtol=0.0, atol=0.0)
    (bad / "simple_cnn" / "manifest.json").write_text(json.dumps(m, indent=2))
    rehash(bad, "simple_cnn")
    code, doc, text = check(bad, tmp_path)
    assert code == 1, text
    refused = [r for r in doc["results"] if r["result"].startswith("simple_cnn:")]
    assert refused and all(r["status"] == "error" and "the case's tolerance gives" in r["executorch_message"]
                           for r in refused), text


def test_a_tampered_bundle_is_not_checked(corpus: Path, tmp_path: Path) -> None:
    """A .bpte changed after export (manifest not re-signed): the core's checked reader refuses its bytes before
    ExecuTorch sees them; every result of that bundle is an error, the run exits 1. A bundle ExecuTorch cannot parse
    (re-signed garbage) is reported with ExecuTorch's refusal, never as a pass."""
    bad = shutil.copytree(corpus, tmp_path / "tampered")
    bpte = bad / "simple_cnn" / "variants" / "export_et.bpte"
    data = bytearray(bpte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bpte.write_bytes(bytes(data))
    code, doc, text = check(bad, tmp_path)
    assert code == 1, text
    errors = [r for r in doc["results"] if r["status"] == "error"]
    assert len(errors) == 4 and all("SHA-256 mismatch" in r["executorch_message"] for r in errors)
    bpte.write_bytes(b"\x00" * 4096)
    rehash(bad, "simple_cnn")
    code, doc, text = check(bad, tmp_path)
    assert code == 1 and not any(r["executorch"] for r in doc["results"] if "export_et@" in r["result"]), text


def test_the_runners_report_fits_its_schema(corpus: Path, tmp_path: Path) -> None:
    """ExecuTorch results (runtime "executorch") in the runner's JSON report fit docs/report-schema.json."""
    import jsonschema

    report = tmp_path / "report.json"
    r = subprocess.run([str(runner_path()), str(corpus), "--result", "*@executorch/*", "--quiet", "--json",
                        str(report)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:]
    doc = json.loads(report.read_text())
    assert any(row["runtime"] == "executorch" for row in doc["results"])
    jsonschema.validate(doc, json.loads((ROOT / "docs" / "report-schema.json").read_text()))
