"""torchconform-run, the C++ CLI, on the golden corpus and on copies broken on purpose (negative controls)."""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

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
)
from torchconform import Case
from torchconform.authoring.builtin import dynamic_router
from torchconform.writing.writer import write_corpus

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end

N_PASS, N_XFAIL = counts()
N_PERTURBED = perturbed_failures()


def test_golden_passes(golden_run) -> None:
    r = golden_run.done
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("\nPASS  ") == N_PASS and r.stdout.count("\nXFAIL ") == N_XFAIL
    assert f"summary: {N_PASS} passed, 0 failed, 0 errors, 0 crashed, 0 timed out, {N_XFAIL} xfailed" in r.stdout
    report = json.loads(golden_run.json.read_text())
    elements = sum(x["total"] for x in report["results"] if x["verdict"] == "PASS")
    assert elements > 0 and f"{elements} elements compared" in r.stdout
    assert report["summary"] == {"passed": N_PASS, "failed": 0, "errors": 0, "crashed": 0, "timed_out": 0,
                                 "xfailed": N_XFAIL, "xpassed": 0, "loosened": 0, "verified": N_PASS, "weak": 0,
                                 "elements": elements, "exit_code": 0}
    assert {row["verdict"] for row in report["results"]} == {"PASS", "XFAIL"}
    assert [(x["case"], x["artifact"], x["input_set"]) for x in report["results"]] == \
        [(p["case"], p["artifact"], p["set"]) for p in planned()]
    suite = ET.parse(golden_run.junit).getroot()
    assert suite.get("tests") == str(N_PASS + N_XFAIL) and suite.get("failures") == "0"
    assert suite.get("skipped") == str(N_XFAIL)


def test_perturbed_golden_fails_naming_case_and_index(run_cli, tmp_path: Path) -> None:
    corpus = perturbed_corpus(tmp_path)
    r = run_cli(corpus, "--json", tmp_path / "r.json")
    assert r.returncode == 1, r.stdout + r.stderr
    fail = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fail) == N_PERTURBED >= 4, fail  # TorchScript, frozen, passes, export@aoti
    assert all("simple_cnn" in f and "/b4_32x32" in f and "worst at [2, 7]" in f for f in fail), fail
    assert fail[0].startswith("FAIL  simple_cnn/b4_32x32 ")
    rows = [x for x in json.loads((tmp_path / "r.json").read_text())["results"] if x["verdict"] == "FAIL"]
    assert all(x["mismatched"] == 1 and x["leaves"][0]["worst_index"] == "[2, 7]" for x in rows)
    # The variants still agree with the TorchScript artifact: only the golden moved.
    assert all(x["vs_artifact"]["ok"] for x in rows if x["artifact"])


def test_perturbed_golden_without_rehash_is_a_corpus_error(run_cli, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    path = corpus / "process_outputs" / "sets" / "top5_labels.expected.pt"
    probs, classes = torch.load(path, weights_only=True)
    torch.save((probs, [classes[1], classes[0], *classes[2:]]), path)
    r = run_cli(corpus)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "ERROR process_outputs/top5_labels" in r.stdout
    assert "process_outputs/sets/top5_labels.expected.pt: SHA-256 mismatch" in r.stdout


def test_swapped_list_order_fails_exactly(run_cli, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    path = corpus / "process_outputs" / "sets" / "top5_labels.expected.pt"
    probs, classes = torch.load(path, weights_only=True)
    torch.save((probs, [classes[1], classes[0], *classes[2:]]), path)
    rehash(corpus, "process_outputs")
    r = run_cli(corpus, "--case", "process_outputs")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL  process_outputs/top5_labels" in r.stdout and "$[1][0]" in r.stdout


def test_traced_router_on_other_routing_fails(run_cli, tmp_path: Path) -> None:
    neg = Case("dynamic_router_traced", "trace", "DynamicRouter traced on a one-expert batch (negative control)",
               dynamic_router.traced_router_negative_control, 202)
    write_corpus(tmp_path / "neg", [neg], log=lambda m: None)
    r = run_cli(tmp_path / "neg")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL  dynamic_router_traced/all_experts" in r.stdout


def test_truncated_artifact_is_a_load_error(run_cli, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    art = corpus / "simple_cnn" / "artifact.pt"
    art.write_bytes(art.read_bytes()[: art.stat().st_size // 2])
    r = run_cli(corpus)
    assert r.returncode == 2
    # The declared size catches a cut file before it is even hashed.
    assert re.search(r"simple_cnn: simple_cnn/artifact.pt has \d+ bytes, the manifest declares \d+", r.stdout), r.stdout
    rehash(corpus, "simple_cnn")  # now the hash agrees and LibTorch itself must refuse the file
    r = run_cli(corpus)
    assert r.returncode == 2, r.stdout + r.stderr
    errors = [line for line in r.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == len(manifests()["simple_cnn"]["input_sets"])
    # The archive check refuses it before LibTorch's reader sees it.
    assert all("simple_cnn/artifact.pt: not a well-formed zip archive" in e for e in errors), errors
    assert "PASS  dynamic_router/all_experts" in r.stdout, "one broken case must not stop the others"


def test_manifest_errors(run_cli, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    mpath = corpus / "dynamic_router" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["tolerance"]["default"]["mode"] = "roughly"
    mpath.write_text(json.dumps(m))
    r = run_cli(corpus)
    assert r.returncode == 2
    # A broken manifest fails its own case, not the corpus: the other cases are still verified.
    assert "ERROR dynamic_router/* [cpu] dynamic_router/manifest.json: SHA-256 mismatch against corpus.json" \
        in r.stdout
    assert "PASS  simple_cnn/b4_32x32" in r.stdout and "PASS  full_model/greedy_b3_s10" in r.stdout
    rehash(corpus, "dynamic_router")
    r = run_cli(corpus)
    assert r.returncode == 2
    assert ('dynamic_router/manifest.json: schema: $.tolerance.default.mode: "roughly" is not one of "allclose", '
            '"ulp", "exact"') in r.stdout
    (corpus / "corpus.json").write_text("{not json")
    r = run_cli(corpus)
    assert r.returncode == 2 and "corpus.json: invalid JSON" in r.stderr


def test_usage_errors(run_cli, tmp_path: Path) -> None:
    for args, message in [
        ((), "no corpus directory given"),
        ((GOLDEN, "--device", "tpu"), "--device must be cpu, cuda or all"),
        ((GOLDEN, "--threads", "0"), "--threads expects an integer >= 1"),
        ((GOLDEN, "--bogus"), "unknown option --bogus"),
        ((GOLDEN, "--case", "nope*"), "--case 'nope*' matches no case"),
        ((tmp_path / "missing",), "not a corpus directory"),
        ((tmp_path,), "no corpus.json"),
    ]:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr, (args, r.stderr)


def test_devices(run_cli) -> None:
    if torch.cuda.is_available():
        r = run_cli(GOLDEN, "--device", "all", "--case", "simple_cnn")
        assert r.returncode == 0 and "[cuda]" in r.stdout
        return
    r = run_cli(GOLDEN, "--device", "cuda")
    assert r.returncode == 2 and "CUDA is not available" in r.stderr
    r = run_cli(GOLDEN, "--device", "all", "--case", "simple_cnn", "--threads", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipped device cuda" in r.stdout and "threads 1" in r.stdout


def test_case_glob_selects(run_cli) -> None:
    r = run_cli(GOLDEN, "--case", "full_*", "--case", "process_outputs", "--quiet")
    assert r.returncode == 0
    cases = {line.split()[1].split("/")[0].split(":")[0] for line in r.stdout.splitlines() if line.startswith("PASS")}
    assert cases == {"full_model", "process_outputs"}


def test_manifest_tolerance_overrides_apply(run_cli, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    path = corpus / "process_outputs" / "sets" / "top5_labels.expected.pt"
    probs, classes = torch.load(path, weights_only=True)
    probs[1, 3] += 1e-3
    torch.save((probs, classes), path)
    rehash(corpus, "process_outputs")
    assert run_cli(corpus, "--case", "process_outputs").returncode == 1  # default float32 tolerance: fails
    mpath = corpus / "process_outputs" / "manifest.json"
    m = json.loads(mpath.read_text())
    m["tolerance"]["outputs"] = {"$[0]": {"mode": "allclose", "atol": 2e-3}}
    mpath.write_text(json.dumps(m))
    rehash(corpus, "process_outputs")
    r = run_cli(corpus, "--case", "process_outputs")
    assert r.returncode == 0, r.stdout + r.stderr  # the per-output override loosens $[0] only
    m["tolerance"]["outputs"] = {"$[0]": {"mode": "ulp", "max_ulp": 10}}
    mpath.write_text(json.dumps(m))
    rehash(corpus, "process_outputs")
    r = run_cli(corpus, "--case", "process_outputs")
    assert r.returncode == 1 and "ulp max_ulp=10" in r.stdout
    m["tolerance"]["outputs"] = {"$[0]": {"mode": "allclose", "atol": -1}}
    mpath.write_text(json.dumps(m))
    rehash(corpus, "process_outputs")
    r = run_cli(corpus, "--case", "process_outputs")
    assert r.returncode == 2
    assert "ERROR process_outputs/* [cpu]" in r.stdout
    assert "schema: $.tolerance.outputs.$[0].atol: must be >= 0, got -1" in r.stdout


# --- torch.export programs and the optimization variants ---------------------------------------------------------

def variant(corpus: Path, case: str, name: str) -> tuple[dict, dict]:
    m = json.loads((corpus / case / "manifest.json").read_text())
    return m, next(v for v in m["variants"] if v["name"] == name)


def save_manifest(corpus: Path, case: str, m: dict) -> None:
    (corpus / case / "manifest.json").write_text(json.dumps(m, indent=2))
    rehash(corpus, case)


def test_missing_aoti_package_is_an_error_naming_the_command(run_cli, tmp_path: Path) -> None:
    r = run_cli(GOLDEN, "--case", "simple_cnn", "--aoti-cache", tmp_path / "empty-cache")
    assert r.returncode == 2, r.stdout
    errors = [line for line in r.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == len(manifests()["simple_cnn"]["input_sets"])
    assert all("simple_cnn:export@aoti/" in e and "no AOTInductor package" in e and "torchconform compile" in e
               for e in errors), errors
    assert "PASS  simple_cnn:frozen/b4_32x32" in r.stdout  # the other artifacts still run


def test_corrupted_program_is_a_clear_error(run_cli, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    path = corpus / "simple_cnn" / "variants" / "export.pt2"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a cut zip: no central directory
    r = run_cli(corpus, "--case", "simple_cnn")
    assert r.returncode == 2
    assert "ERROR simple_cnn:export@aoti/b4_32x32" in r.stdout and "variants/export.pt2 has" in r.stdout
    assert "PASS  simple_cnn/b4_32x32" in r.stdout
    rehash(corpus, "simple_cnn")  # vouched for: the package key is read from the program, which is not a zip
    r = run_cli(corpus, "--case", "simple_cnn")
    assert r.returncode == 2 and "PASS  simple_cnn/b4_32x32" in r.stdout
    assert ("ERROR simple_cnn:export@aoti/b4_32x32 [cpu] simple_cnn/variants/export.pt2: not a well-formed zip archive"
            in r.stdout), r.stdout
    c = tc("compile", corpus, "--case", "simple_cnn", "--aoti-cache", tmp_path / "cache", timeout=300)
    assert c.returncode == 2 and "torchconform compile: error:" in c.stderr and "export.pt2" in c.stderr, c.stderr


def test_program_specialization_is_checked(run_cli, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    m, v = variant(corpus, "process_outputs", "export")
    assert v["inputs"][2] == {"kind": "const", "value": 5}
    v["inputs"][2]["value"] = 3  # the program was captured with top_k=5; the sets pass 5
    save_manifest(corpus, "process_outputs", m)
    r = run_cli(corpus, "--case", "process_outputs")
    assert r.returncode == 2
    assert "ERROR process_outputs:export@aoti/top5_labels" in r.stdout
    assert "input leaf 2 is 5, but the exported program was specialized on 3" in r.stdout


def test_int_outputs_are_converted_only_when_declared(run_cli, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    m, v = variant(corpus, "process_outputs", "export")
    v["int_outputs_as_tensors"] = False
    save_manifest(corpus, "process_outputs", m)
    r = run_cli(corpus, "--case", "process_outputs")
    assert r.returncode == 1
    fail = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fail) == len(v["input_sets"]) and all("process_outputs:export@aoti/" in f for f in fail), fail
    assert "$[1][0] int: kind mismatch: expected int, actual Tensor" in fail[0]


def test_a_variant_that_disagrees_with_the_artifact_fails(run_cli, tmp_path: Path) -> None:
    """The optimization variants are checked against the unoptimized artifact too: give the case an artifact whose
    classifier bias moved, and every variant (still right against the golden) must FAIL against it."""
    corpus = copy_corpus(tmp_path)
    art = corpus / "simple_cnn" / "artifact.pt"
    module = torch.jit.load(str(art))
    with torch.no_grad():
        module.classifier.bias[3] += 0.01
    module.save(str(art))
    rehash(corpus, "simple_cnn")
    r = run_cli(corpus, "--case", "simple_cnn", "--json", tmp_path / "r.json")
    assert r.returncode == 1
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    for x in rows:
        if x["artifact"] == "":
            assert x["verdict"] == "FAIL" and not x["ok"]
        elif x["artifact"] != "optimized":  # (optimized cannot be loaded: XFAIL)
            assert x["verdict"] == "FAIL", x["line"]
            assert x["ok"] and not x["vs_artifact"]["ok"], x["line"]  # right against the golden, not the artifact
            assert "vs artifact:" in x["line"] and "mismatched=" in x["line"]


def test_the_verifying_cpu_capability_is_printed_beside_the_exporters(runner, tmp_path) -> None:
    """Goldens and outputs may differ in the last bits across ATen's CPU kernels: the runner says which it used,
    beside the exporter's (and ATEN_CPU_CAPABILITY, which caps it, shows: the control)."""
    import os

    for env, want in (({}, torch.backends.cpu.get_cpu_capability()), ({"ATEN_CPU_CAPABILITY": "default"}, "DEFAULT")):
        cmd = [str(runner), str(GOLDEN), "--case", "process_outputs", "--json", str(tmp_path / "r.json")]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"(CPU {want}); corpus.json" in done.stdout and "exported with torch" in done.stdout
        assert json.loads((tmp_path / "r.json").read_text())["runtime"]["cpu_capability"] == want
