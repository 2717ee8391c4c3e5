"""Hostile corpora, round 2 (issue 28): one checked door into a corpus. Each test reproduces one finding on a re-signed
copy of golden/ (what anyone who can commit to a corpus can make) and shows the class refused, beside a control that
shows the same path working on honest data:

1. structure from the program (repeated dict keys, dataclass field order; the C++ unit tests cover the spec logic);
2. a result that compared nothing is not a pass, and the summary counts elements;
3. "nothing verified" holds under pytest-xdist;
4. the AOTInductor cache: per user, no shared temporary directory, digest checked before load;
5. TorchScript artifacts that act outside the process are refused before they load;
6. faces read corpus files only through the core's checked reader (links out, FIFOs);
7. corpus text is escaped in every face;
8. a legacy torch.save in a use_pickle payload of a .pt2 is refused at the first layer;
9. a noise envelope never calls a failing result "within" it;
10. localize: no traceback, exit statuses as documented;
11. (ctest re-lists by content: test_cmake_package.py, heavy tier);
12. (bundle-check's tolerance from the case's policy: test_executorch.py, in ci/executorch.sh's environment)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import hostile
from conftest import GOLDEN, rehash, sha256, tc
from mutation import CONTROL, EVIL_TEXT
from torchconform import _core

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end


def rows(corpus: Path, run_cli, *args: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    report = corpus.parent / "r.json"
    r = run_cli(corpus, "--json", report, "--quiet", *args)
    return r, json.loads(report.read_text())["results"] if report.is_file() else []


# ---- 2. nothing compared is not a pass ---------------------------------------------------------------------------
def test_a_result_that_compared_nothing_is_not_a_pass(tmp_path: Path, run_cli) -> None:
    corpus = hostile.single(tmp_path, "simple_cnn")
    r, before = rows(corpus, run_cli, "--result", "simple_cnn/*")
    assert r.returncode == 0 and all(x["total"] > 0 for x in before)  # the control: the sets compare elements
    assert f"{sum(x['total'] for x in before)} elements compared" in r.stdout
    hostile._empty_goldens(corpus, "simple_cnn", "", "", tmp_path / "m", None)
    rehash(corpus, "simple_cnn")
    r, after = rows(corpus, run_cli, "--result", "simple_cnn/*")
    assert r.returncode == 2 and "NOTHING WAS VERIFIED" in r.stdout and "0 elements compared" in r.stdout, r.stdout
    assert after and all(x["verdict"] == "ERROR" and "compared 0 elements" in x["error"] for x in after)
    report = tc("report", corpus, "--results", corpus.parent / "r.json")
    assert "**PASS**" not in report.stdout, report.stdout


def test_a_golden_that_checks_little_is_judged_from_its_values(tmp_path: Path, run_cli) -> None:
    """A constant golden (and an output the model makes constant, so it still passes) is marked on the result line
    and counted, whatever the manifest says: the exporter's record of it is deleted here."""
    corpus = hostile.single(tmp_path, "simple_cnn")
    r, _ = rows(corpus, run_cli, "--result", "simple_cnn/b4_32x32")
    assert "checks little" not in r.stdout  # the control
    m = hostile.manifest(corpus, "simple_cnn")
    for s in m["input_sets"]:
        s.pop("degenerate", None)
    art = corpus / "simple_cnn" / "artifact.pt"
    art.unlink()
    torch.jit.script(_Constant()).save(str(art))
    hostile.save(torch.full((4, 10), 0.5), hostile.set_file(corpus, "simple_cnn", "b4_32x32", "expected"))
    hostile.write_manifest(corpus, "simple_cnn", m)
    r, out = rows(corpus, run_cli, "--result", "simple_cnn/b4_32x32")
    assert out[0]["verdict"] == "PASS" and "[golden checks little: $: all 40 elements are 0.5 (constant)]" in \
        out[0]["line"], r.stdout
    assert "(1 on a golden that checks little)" in r.stdout and out[0]["leaves"][0]["weak"]


class _Constant(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 10), 0.5)


# ---- 3. nothing verified under pytest-xdist ------------------------------------------------------------------------
@pytest.mark.heavy  # (default tier: its time; the heavy tier runs it)
def test_nothing_verified_fails_the_session_under_xdist(tmp_path: Path) -> None:
    corpus, _ = hostile.expected_failures_only(tmp_path)
    args = [sys.executable, "-m", "pytest", f"--torchconform-corpus={corpus}", "-q", "-p", "no:cacheprovider", "-o",
            "addopts="]
    # (without xdist: test_hostile.py's test_only_expected_failures_verifies_nothing)
    r = subprocess.run(args + ["-n", "2", "--dist", "loadgroup"], capture_output=True, text=True, cwd=tmp_path,
                       timeout=600)
    assert r.returncode == 1 and "nothing was verified" in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    r = subprocess.run(args[:3] + [f"--torchconform-corpus={GOLDEN}", "--torchconform-case", "process_outputs",
                                   *args[4:], "-n", "2", "--dist", "loadgroup"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:]  # the control: a corpus that verifies passes under xdist too


# ---- 4. the AOTInductor cache ----------------------------------------------------------------------------------
def _golden_cache() -> Path:
    from torchconform.writing.aoti import default_cache

    return default_cache()


def test_the_default_cache_needs_a_private_home(runner: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "TORCHCONFORM_AOTI_CACHE")}
    r = subprocess.run([str(runner), str(GOLDEN), "--case", "process_outputs", "--quiet"], capture_output=True,
                       text=True, env=env)
    errors = [x for x in r.stdout.splitlines() if x.startswith("ERROR process_outputs:export@aoti/")]
    assert r.returncode == 2 and errors and all("no AOTInductor package cache: set TORCHCONFORM_AOTI_CACHE" in x
                                                for x in errors), r.stdout
    assert "/tmp/.cache" not in r.stdout
    r = subprocess.run([sys.executable, "-c", "import torch; from torchconform import _core; "
                        "print(_core.default_aoti_cache())"], capture_output=True, text=True,
                       env={**env, "XDG_CACHE_HOME": "relative/dir", "HOME": str(tmp_path)})
    assert r.stdout.strip() == str(tmp_path / ".cache" / "torchconform" / "aoti"), r.stdout + r.stderr  # XDG rules


def test_a_cache_others_can_write_is_refused(runner: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(_golden_cache(), cache)
    cache.chmod(0o700)
    r = subprocess.run([str(runner), str(GOLDEN), "--case", "process_outputs", "--quiet", "--aoti-cache", str(cache)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout  # the control: a private copy of the cache serves
    cache.chmod(0o777)
    r = subprocess.run([str(runner), str(GOLDEN), "--case", "process_outputs", "--quiet", "--aoti-cache", str(cache)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "it is group- or world-writable" in r.stdout, r.stdout
    with pytest.raises(_core.UsageError, match="group- or world-writable"):
        _core.check_aoti_cache(str(cache))
    cache.chmod(0o700)
    made = _core.prepare_aoti_cache(str(tmp_path / "new" / "cache"))
    assert (Path(made).stat().st_mode & 0o777) == 0o700 and ((tmp_path / "new").stat().st_mode & 0o777) == 0o700
    if os.geteuid() == 0:  # another owner can only be made by root (CI runs as root)
        os.chown(cache, 4242, 4242)
        with pytest.raises(_core.UsageError, match="owned by uid 4242"):
            _core.check_aoti_cache(str(cache))


def test_a_planted_or_stale_package_is_not_loaded(runner: Path, tmp_path: Path) -> None:
    """A package whose bytes are not those its key.json recorded at compile, or whose key.json names another
    program, is refused before the loader sees it (a planted package's constructor ran inside the runner)."""
    cache = tmp_path / "cache"
    shutil.copytree(_golden_cache(), cache)
    opened = _core.Corpus.open(str(GOLDEN))
    po = next(v for c in opened.cases if c.name == "process_outputs" for v in c.variants if v.file and
              v.kind == "exported_program")
    cnn = next(v for c in opened.cases if c.name == "simple_cnn" for v in c.variants if v.file and
               v.kind == "exported_program")
    target = Path(_core.aoti_package_path(str(cache), _core.program_key(opened, "process_outputs", po.name), "cpu"))
    other = Path(_core.aoti_package_path(str(cache), _core.program_key(opened, "simple_cnn", cnn.name), "cpu"))
    shutil.copyfile(other, target)  # another program's package under this one's key, key.json left as it was
    r = subprocess.run([str(runner), str(GOLDEN), "--case", "process_outputs", "--quiet", "--aoti-cache", str(cache)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and re.search(r"refused: \d+ bytes, key.json says \d+", r.stdout), r.stdout
    shutil.copyfile(other.with_name("key.json"), target.with_name("key.json"))  # ...and its key.json too
    r = subprocess.run([str(runner), str(GOLDEN), "--case", "process_outputs", "--quiet", "--aoti-cache", str(cache)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "key.json names another program" in r.stdout, r.stdout


# ---- 5. artifacts that act outside the process ------------------------------------------------------------------
@pytest.mark.parametrize("where", ["forward", "__setstate__"])
def test_an_artifact_that_writes_files_is_refused_before_it_loads(tmp_path: Path, run_cli, where: str) -> None:
    marker = tmp_path / "WRITTEN"
    corpus = hostile.single(tmp_path, "simple_cnn")
    hostile._side_effect_artifact(corpus, "simple_cnn", "", "", marker, type("R", (), {"choice": lambda _, x: where})())
    rehash(corpus, "simple_cnn")
    assert not marker.exists()
    r, out = rows(corpus, run_cli, "--result", "simple_cnn/*")
    assert r.returncode == 2 and out and all("names 'save', a call of aten::save" in x["error"] for x in out), r.stdout
    assert not marker.exists()
    for face in (["verify", corpus, "--quiet", "--result", "simple_cnn/*"], ["report", corpus, "--quiet"]):
        assert tc(*face).returncode == 2 and not marker.exists()
    probe, _ = _probe(corpus)
    assert {x["status"] for x in probe if x["artifact"] == ""} == {"corpus_error"} and not marker.exists()
    # The control: trusted, it runs, and the file is written: the refusal is what kept it from happening.
    r = run_cli(corpus, "--quiet", "--result", "simple_cnn/*", "--allow-side-effects")
    assert marker.exists() and "side-effect operators ALLOWED" in r.stdout


def test_from_file_and_print_are_refused_too(tmp_path: Path, run_cli) -> None:
    victim = tmp_path / "victim.sh"
    victim.write_text("#!/bin/sh\necho safe\n")
    before = victim.read_bytes()

    class Overwrites(torch.nn.Module):
        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = torch.from_file(self.path, shared=True, size=4, dtype=torch.uint8)
            t.copy_(torch.tensor([35, 35, 35, 35], dtype=torch.uint8))
            return x + t.sum().float() * 0  # (used: TorchScript would drop an unused call)

    class Prints(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            print("PASS  forged/line [cpu]")
            return x

    for module, name in ((Overwrites(str(victim)), "from_file"), (Prints(), "print")):
        corpus = hostile.single(tmp_path / name, "simple_cnn")
        art = corpus / "simple_cnn" / "artifact.pt"
        art.unlink()
        torch.jit.script(module).save(str(art))
        rehash(corpus, "simple_cnn")
        r, out = rows(corpus, run_cli, "--result", "simple_cnn/*")
        assert r.returncode == 2 and all(f"names '{name}'" in x["error"] for x in out), r.stdout
        assert "forged/line" not in r.stdout
    assert victim.read_bytes() == before
    assert set(_core.side_effect_operators()) >= {"aten::from_file", "aten::save", "prim::Print"}


def test_compile_refuses_a_program_that_acts_outside_the_process() -> None:
    """An exported program's graph with a call to aten::save (torch.export cannot trace one from Python, but a
    re-signed program's graph is whatever its file says): found, by the core's list of such operators."""
    from types import SimpleNamespace

    from torchconform.writing.aoti_build import side_effect_calls

    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    graph.call_function(torch.ops.aten.save.default, (x, "/tmp/never"))
    graph.output(graph.call_function(torch.ops.aten.relu.default, (x,)))
    program = SimpleNamespace(graph_module=torch.fx.GraphModule(torch.nn.Module(), graph))
    assert side_effect_calls(program, list(_core.side_effect_operators())) == ["aten::save (node save_default)"]
    plain = torch.export.export(torch.nn.ReLU(), (torch.zeros(2),))
    assert side_effect_calls(plain, list(_core.side_effect_operators())) == []  # the control


# ---- 6. one checked door ----------------------------------------------------------------------------------------
def _probe(corpus: Path) -> tuple[list[dict], str]:
    from test_hostile import probe

    return probe(corpus)


def test_a_resigned_link_out_of_the_corpus_is_refused_by_every_face(tmp_path: Path, run_cli) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    corpus = hostile.single(tmp_path / "c", "process_outputs")
    pt2 = corpus / "process_outputs" / "variants" / "export.pt2"
    shutil.copyfile(pt2, outside / "export.pt2")  # a perfectly good program, outside the corpus
    pt2.unlink()
    pt2.symlink_to(outside / "export.pt2")
    rehash(corpus, "process_outputs")
    r = tc("compile", corpus, "--aoti-cache", tmp_path / "cache")
    assert r.returncode == 2 and "resolves outside the corpus directory" in r.stderr, r.stdout + r.stderr
    r = tc("localize", corpus, "--case", "process_outputs")
    assert r.returncode == 2 and "resolves outside the corpus directory" in r.stderr and "Traceback" not in r.stderr
    r, _ = rows(corpus, run_cli)
    assert "resolves outside the corpus directory" in r.stdout


def test_fifos_never_hang_a_face(tmp_path: Path) -> None:
    corpus = hostile.single(tmp_path / "c", "simple_cnn")
    for rel in ("variants/export.pt2", "artifact.pt"):
        path = corpus / "simple_cnn" / rel
        path.unlink()
        os.mkfifo(path)
    for face in (["compile", corpus, "--aoti-cache", tmp_path / "cache"], ["localize", corpus, "--case", "simple_cnn"],
                 ["bench", corpus, "--skip-models", "--skip-compile", "--skip-spec", "--quick", "--rounds", "1",
                  "--out", tmp_path / "bench"]):
        r = tc(*face, timeout=120)  # a hang raises TimeoutExpired: the test fails
        assert r.returncode == 2 and "not a regular file" in r.stdout + r.stderr, (face[0], r.stdout + r.stderr)
        assert "Traceback" not in r.stderr, r.stderr


def test_read_case_file_is_the_one_door() -> None:
    opened = _core.Corpus.open(str(GOLDEN))
    m = json.loads(next(c for c in opened.cases if c.name == "simple_cnn").manifest_json)
    data = _core.read_case_file(opened, "simple_cnn", m["artifact"]["file"])
    assert sha256_bytes(data) == m["artifact"]["sha256"]
    for rel in ("manifest.json", "../corpus.json", "sets/../artifact.pt", "/etc/passwd"):
        with pytest.raises(_core.CorpusError, match="not a file its manifest declares"):
            _core.read_case_file(opened, "simple_cnn", rel)


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# ---- 7. corpus text in every face --------------------------------------------------------------------------------
def _raw(text: str) -> list[str]:
    """Raw control, C1, bidi and zero-width characters, and lines a corpus forged (a PASS line, a heading, a
    row): what must never reach a face's output."""
    found = sorted({f"U+{ord(ch):04X}" for ch in CONTROL.findall(text.replace("\n", "").replace("\t", ""))})
    found += [line for line in text.splitlines() if line.startswith(("PASS  forged", "## heading", "| a |"))]
    return found


@pytest.mark.heavy  # (default tier: its time; the heavy tier runs it)
def test_every_face_escapes_corpus_text(tmp_path: Path, run_cli) -> None:
    """One corpus full of control, bidi and Markdown text (descriptions, xfail reasons, an ExecuTorch variant's
    error, the operator libraries, a program's submodule paths) through every face: the runner, verify, report,
    tolerances, compile, localize, bundle-check, compat and the pytest plugin."""
    corpus = hostile.single(tmp_path / "c", "process_outputs")
    m = hostile.manifest(corpus, "process_outputs")
    m["description"] = EVIL_TEXT
    program = next(v for v in m["variants"] if v["kind"] == "exported_program")
    program["xfail"] = {"reason": EVIL_TEXT}
    m["operators"] = {"namespaces": ["evil"], "libraries": [EVIL_TEXT]}
    m["variants"].append({"name": "export_et", "kind": "executorch_program", "description": EVIL_TEXT,
                          "transform": "t", "error": EVIL_TEXT, "xfail": {"reason": EVIL_TEXT}, "findings": [],
                          "details": {}})
    hostile.write_manifest(corpus, "process_outputs", m)
    # the program's submodule paths (nn_module_stack), which localize prints: re-signed
    pt2 = corpus / "process_outputs" / program["file"]
    hostile.replace_record(pt2, "/models/model.json", lambda d: d.replace(b"L__self__", json.dumps(
        EVIL_TEXT).encode()[1:-1]))
    rehash(corpus, "process_outputs")
    report = tmp_path / "r.json"
    outputs = {"runner": run_cli(corpus, "--json", report), "verify": tc("verify", corpus),
               "report": tc("report", corpus), "tolerances": tc("tolerances", corpus, "--results", report),
               "compile": tc("compile", corpus, "--aoti-cache", tmp_path / "cache"),
               "localize": tc("localize", corpus, "--case", "process_outputs"),
               "bundle-check": tc("bundle-check", corpus, "--results", report),
               "compat": tc("compat", "--corpus", f"c:{corpus}", "--runtime", f"this:{sys.executable}",
                            "--out", tmp_path / "compat"),
               "plugin": subprocess.run([sys.executable, "-m", "pytest", f"--torchconform-corpus={corpus}", "-rA",
                                         "-p", "no:cacheprovider", "-o", "addopts="], capture_output=True, text=True,
                                        cwd=tmp_path, timeout=600)}
    files = {"compat.md": tmp_path / "compat" / "compat.md", "report.json": report}
    assert "operators of namespace 'evil'" in outputs["compile"].stderr  # the control: the hint was printed
    assert "NOT BUNDLED" in outputs["bundle-check"].stdout
    for name, done in outputs.items():
        assert "Traceback" not in done.stderr, (name, done.stderr[-2000:])
        assert _raw(done.stdout + done.stderr) == [], (name, _raw(done.stdout + done.stderr))
    for name, path in files.items():
        assert path.is_file() and _raw(path.read_text()) == [], name


# ---- 8. a legacy pickle in a .pt2 ----------------------------------------------------------------------------------
def test_a_legacy_torch_save_in_a_use_pickle_payload_is_refused_at_the_first_layer(tmp_path: Path) -> None:
    from torchconform.safeload import UnsafeFile, check_exported_program

    marker = tmp_path / "PWNED"
    pt2 = tmp_path / "export.pt2"
    shutil.copyfile(GOLDEN / "simple_cnn" / "variants" / "export.pt2", pt2)
    check_exported_program(pt2, "control")  # the control: the honest program passes
    hostile.legacy_pickle_weight(pt2, marker)
    with pytest.raises(UnsafeFile, match="use_pickle payload that is not a zip torch.save"):
        check_exported_program(pt2, "attack")
    corpus = hostile.single(tmp_path / "c", "simple_cnn")
    hostile._legacy_pickle_pt2(corpus, "simple_cnn", "", "", marker, None)
    rehash(corpus, "simple_cnn")
    r = tc("compile", corpus, "--aoti-cache", tmp_path / "cache")
    assert r.returncode == 2 and "use_pickle payload" in r.stderr and not marker.exists(), r.stderr


# ---- 9. the envelope never calls a failure "within" ------------------------------------------------------------
def test_a_failing_result_is_never_within_its_envelope(tmp_path: Path, run_cli) -> None:
    corpus = hostile.single(tmp_path, "simple_cnn")
    hostile._huge_envelope(corpus, "simple_cnn", "b4_32x32", "expected", tmp_path / "m", None)
    rehash(corpus, "simple_cnn")
    r, out = rows(corpus, run_cli, "--result", "simple_cnn/b4_32x32")
    assert out[0]["verdict"] == "FAIL" and out[0]["envelope"]["within"] is False, out[0]
    assert "outside]" in out[0]["line"] and "beyond the tolerance" in out[0]["envelope"]["detail"]


# ---- 10. localize answers, never a traceback --------------------------------------------------------------------
def test_localize_refuses_an_unreadable_program_and_sets_outside_the_guards(tmp_path: Path) -> None:
    import dataclasses

    from torchconform.authoring.registry import select
    from torchconform.writing.writer import write_corpus

    corpus = tmp_path / "c"
    write_corpus(corpus, [dataclasses.replace(c, record_submodules=True) for c in select(["simple_cnn"])],
                 log=lambda m: None)
    r = tc("localize", corpus, "--case", "simple_cnn", "--set", "b4_32x32")
    assert r.returncode in (0, 1) and "NOT RUN" not in r.stdout, r.stdout + r.stderr  # the control
    hostile.save((torch.randn(1, 3, 4, 4),), hostile.set_file(corpus, "simple_cnn", "b4_32x32", "inputs"))
    rehash(corpus, "simple_cnn")
    r = tc("localize", corpus, "--case", "simple_cnn", "--set", "b4_32x32")
    assert r.returncode == 2 and "NOT RUN" in r.stdout and "guards" in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    pt2 = corpus / "simple_cnn" / "variants" / "export.pt2"
    pt2.unlink()
    with zipfile.ZipFile(pt2, "w") as z:
        z.writestr("export/models/model.json", "{}")
    rehash(corpus, "simple_cnn")
    r = tc("localize", corpus, "--case", "simple_cnn")
    assert r.returncode == 2 and "torchconform localize: error:" in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---- 1. structure from the program (the end-to-end half; tests/cpp has the spec logic) ---------------------------
def test_json_keys_written_twice_are_refused(tmp_path: Path, run_cli) -> None:
    corpus = hostile.single(tmp_path, "simple_cnn")
    mpath = corpus / "simple_cnn" / "manifest.json"
    text = mpath.read_text()
    # A loose tolerance written after the real one: readers that keep the last key would use it.
    mpath.write_text(text.replace('"tolerance": {', '"tolerance": {"default": {"mode": "exact"}, "outputs": {}}, '
                                  '"tolerance": {', 1))
    index = json.loads((corpus / "corpus.json").read_text())
    index["cases"][0]["sha256"] = sha256(mpath)
    (corpus / "corpus.json").write_text(json.dumps(index))
    r, _ = rows(corpus, run_cli)
    assert r.returncode == 2 and "key 'tolerance' appears twice in one JSON object" in r.stdout, r.stdout

