"""``torchconform upgrade`` end to end with what is on this machine: the "to" side is this torch with
ATEN_CPU_CAPABILITY=default (LibTorch's portable kernels, or AVX2 where the run already uses those: numbers move the
way an upgrade moves them), through the same environments, runners, exports, packages and cells a real upgrade uses
(ci/upgrade.sh runs real versions: Debian's 1.13.1, 2.13.0, 2.14.1 and 2.15.0; docs/upgrade.md). Negative controls: a
perturbed re-export is beyond tolerance (BREAK numerics), an artifact the other runtime cannot load breaks (BREAK
load), and the verdict logic on cells a real version pair produces (a package from another version that does not
run: REBUILD-REQUIRED)."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from conftest import ROOT, rehash, runner_path, tc, tc_here
from torchconform import _core
from torchconform.schema import standard_validate
from torchconform.tools import compat
from torchconform.tools.upgrade_verdict import apply_waivers, exit_status, judge, load_waivers

# e2e: environments, runners and exports; one xdist group: the module's upgrade run is made once
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("upgrade")]

EXAMPLES = ROOT / "examples" / "my_cases.py"
THIS = torch.__version__.split("+")[0]
# The "to" side runs this torch at another CPU capability than the "from" side: LibTorch's portable kernels, or,
# where this whole run already uses them (ci/test.sh --any-cpu), AVX2 kernels (every x86-64 machine here has AVX2).
SIM_CAPABILITY = "avx2" if os.environ.get("ATEN_CPU_CAPABILITY") == "default" else "default"
SIM = f"{THIS}+{SIM_CAPABILITY}"  # this torch on other kernels: "another version" whose numbers move
SAME = f"{THIS}+same"  # this torch as it is: a second label for the same numbers
SCHEMA = json.loads((ROOT / "docs" / "upgrade-schema.json").read_text())


def wrappers(tmp: Path) -> tuple[Path, Path]:
    """An interpreter and a runner that run this torch with ATEN_CPU_CAPABILITY=SIM_CAPABILITY."""
    py, run = tmp / "python-default", tmp / "runner-default"
    py.write_text(f"#!/bin/sh\nATEN_CPU_CAPABILITY={SIM_CAPABILITY} exec {sys.executable} \"$@\"\n")
    run.write_text(f"#!/bin/sh\nATEN_CPU_CAPABILITY={SIM_CAPABILITY} exec {runner_path()} \"$@\"\n")
    for p in (py, run):
        p.chmod(0o755)
    return py, run


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("upgrade")
    py, run = wrappers(tmp)
    args = ["--cases", EXAMPLES, "--from", THIS, "--cache", tmp / "cache"]
    r = tc("upgrade", *args, "--to", SIM, "--env", f"{SIM}={py}:{run}", "--out", tmp / "out", timeout=1800)
    return {"tmp": tmp, "done": r, "args": args, "env": f"{SIM}={py}:{run}",
            "result": json.loads((tmp / "out" / "upgrade.json").read_text()) if (tmp / "out" / "upgrade.json").is_file()
            else {}}


def test_a_verdict_per_model_and_every_report(upgraded: dict) -> None:
    r, result = upgraded["done"], upgraded["result"]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    models = {v["model"]: v for v in result["verdicts"]}
    assert set(models) == {"residual_mlp", "attention_block", "attention_block_export"}
    assert all(v["verdict"] in ("PASS", "DRIFT") and v["reasons"] for v in models.values()), models
    # The portable kernels move the TorchScript models' numbers: measured, within tolerance, with the ULPs.
    assert models["residual_mlp"]["verdict"] == "DRIFT" and models["residual_mlp"]["max_ulp"] > 0
    assert any(d["cell"].endswith("(run against run)") and d["max_ulp"] for d in result["drift"])
    assert f"DRIFT                        residual_mlp -> torch {SIM}" in r.stdout and "upgrade: 3 models" in r.stdout
    assert standard_validate(SCHEMA, result) == ""
    assert _core.validate_with_schema(json.dumps(SCHEMA), json.dumps(result)) == ""
    out = upgraded["tmp"] / "out"
    md = (out / "upgrade.md").read_text()
    assert "| model | to | verdict | reasons |" in md and "## Drift per output" in md and "CPU capability" in md
    suites = ET.parse(out / "upgrade.xml").getroot()
    assert len(suites.findall(".//testcase")) == 3 * 6
    assert (out / "upgrade.png").is_file()
    envs_ = result["environments"]
    assert envs_[SIM]["cpu_capability"] == SIM_CAPABILITY.upper() != envs_[THIS]["cpu_capability"], envs_


def test_cells_run_alone_and_merge_into_the_same_verdicts(upgraded: dict) -> None:
    tmp, args = upgraded["tmp"], upgraded["args"]
    listed = tc("upgrade", *args, "--to", SIM, "--env", upgraded["env"], "--list-cells")
    ids = listed.stdout.split()
    assert listed.returncode == 0 and ids == [f"capture:{THIS}", f"capture:{SIM}", f"ops:{THIS}->{SIM}",
                                              f"ship:{THIS}->{SIM}", f"reexport:{THIS}->{SIM}",
                                              f"rollback:{SIM}->{THIS}", f"packages:{THIS}<->{SIM}"]
    one = tc("upgrade", *args, "--to", SIM, "--env", upgraded["env"], "--cell", f"reexport:{THIS}->{SIM}",
             "--out", tmp / "matrix")
    assert one.returncode == 0 and (tmp / "matrix" / "cells").is_dir(), one.stdout + one.stderr
    merged = tc("upgrade", *args, "--to", SIM, "--merge", tmp / "out" / "cells", "--out", tmp / "merged")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    again = json.loads((tmp / "merged" / "upgrade.json").read_text())
    assert [(v["model"], v["verdict"]) for v in again["verdicts"]] == \
           [(v["model"], v["verdict"]) for v in upgraded["result"]["verdicts"]]
    # A merge that misses cells says so: not checked, exit 2 (never a green verdict on half the evidence).
    partial = tc("upgrade", *args, "--to", SIM, "--merge", tmp / "matrix" / "cells", "--out", tmp / "partial")
    assert partial.returncode == 2 and "not run (no cell result)" in partial.stdout, partial.stdout


def test_a_second_run_reuses_the_cells_whose_inputs_did_not_change(upgraded: dict) -> None:
    tmp, args = upgraded["tmp"], upgraded["args"]
    r = tc("upgrade", *args, "--to", SIM, "--env", upgraded["env"], "--out", tmp / "again")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    again = json.loads((tmp / "again" / "upgrade.json").read_text())
    assert all(c.get("reused") and c["seconds"] == 0 for c in again["cells"]), [c["cell"] for c in again["cells"]]
    assert again["verdicts"] == upgraded["result"]["verdicts"] and again["drift"] == upgraded["result"]["drift"]
    assert "reused: the same inputs as the run at" in (tmp / "again" / "upgrade.md").read_text()
    assert standard_validate(SCHEMA, again) == ""
    # Controls: the "to" side's runner is another file (a wrapper with one more line): its cells run again, the
    # "from" side's capture is still reused; and --no-reuse runs everything.
    (tmp / "changed").mkdir()
    _, run = wrappers(tmp / "changed")
    run.write_text(run.read_text() + "# another runner\n")
    env = ["--to", SIM, "--env", f"{SIM}={upgraded['env'].split('=', 1)[1].split(':')[0]}:{run}"]
    cells = ["--cell", f"capture:{THIS}", "--cell", f"reexport:{THIS}->{SIM}"]
    r = tc("upgrade", *args, *env, *cells, "--out", tmp / "changed" / "out")
    assert r.returncode == 0, r.stdout + r.stderr
    kept = {c: bool(json.loads((tmp / "changed" / "out" / "cells" / f"{c}.json").read_text()).get("reused"))
            for c in (f"capture_{THIS}", f"reexport_{THIS}_to_{SIM}")}
    assert kept == {f"capture_{THIS}": True, f"reexport_{THIS}_to_{SIM}": False}, kept
    r = tc("upgrade", *args, *env, "--cell", f"capture:{THIS}", "--no-reuse", "--out", tmp / "changed" / "fresh")
    cell = json.loads((tmp / "changed" / "fresh" / "cells" / f"capture_{THIS}.json").read_text())
    assert r.returncode == 0 and "reused" not in cell, r.stdout + r.stderr


def test_a_cell_key_follows_content_and_what_a_wrapper_runs(tmp_path: Path) -> None:
    from torchconform.tools.upgrade import file_digest, tree_digest

    real = tmp_path / "real-runner"
    real.write_bytes(b"\x7fELF one build")
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(f"#!/bin/sh\nATEN_CPU_CAPABILITY=default exec {real} \"$@\"\n")
    before = file_digest(str(wrapper))
    real.write_bytes(b"\x7fELF another build")  # the wrapper did not change, what it runs did
    assert file_digest(str(wrapper)) != before
    (tmp_path / "corpus" / "case").mkdir(parents=True)
    golden = tmp_path / "corpus" / "case" / "g.pt"
    golden.write_bytes(b"1234")
    before = tree_digest(tmp_path / "corpus")
    golden.write_bytes(b"1235")
    assert tree_digest(tmp_path / "corpus") != before
    golden.write_bytes(b"1234")
    assert tree_digest(tmp_path / "corpus") == before  # (content, not time: a rewrite of the same bytes is no change)


def test_a_perturbed_reexport_is_beyond_tolerance(upgraded: dict) -> None:
    tmp, args = upgraded["tmp"], upgraded["args"]
    same = ["--to", SAME, "--env", f"{SAME}={sys.executable}:{runner_path()}"]
    cells = [f"capture:{THIS}", f"capture:{SAME}", f"reexport:{THIS}->{SAME}"]
    r = tc("upgrade", *args, *same, *[a for c in cells for a in ("--cell", c)], "--out", tmp / "same")
    assert r.returncode == 0, r.stdout + r.stderr
    merge = ["--merge", tmp / "same" / "cells", "--out", tmp / "same-report"]
    control = json.loads((tmp / "same" / "cells" / f"reexport_{THIS}_to_{SAME}.json").read_text())
    assert all(x["class"] == compat.PASS and x["bitwise"] for rs in control["models"].values() for x in rs)
    # The re-export's golden of one set moved by 1e-3 (re-signed): its drift is beyond the case's tolerance.
    capture = json.loads((tmp / "same" / "cells" / f"capture_{SAME}.json").read_text())
    corpus = Path(capture["corpus"])
    path = corpus / "residual_mlp" / "sets" / "b16.expected.pt"
    expected = torch.load(path, weights_only=True)
    expected.view(-1)[3] += 1e-3
    path.unlink()
    torch.save(expected, path)
    rehash(corpus, "residual_mlp")
    r = tc("upgrade", *args, *same, "--cell", f"reexport:{THIS}->{SAME}", "--out", tmp / "same")
    assert r.returncode == 0, r.stdout + r.stderr
    r = tc("upgrade", *args, *same, *merge)
    verdicts = {v["model"]: v for v in json.loads((tmp / "same-report" / "upgrade.json").read_text())["verdicts"]}
    assert r.returncode == 1 and verdicts["residual_mlp"]["verdict"] == "BREAK", r.stdout
    assert verdicts["residual_mlp"]["category"] == "numerics" and "residual_mlp/b16" in \
        " ".join(verdicts["residual_mlp"]["reasons"])
    drift = json.loads((tmp / "same-report" / "upgrade.json").read_text())["drift"]
    assert any(d["id"] == "residual_mlp/b16" and not d["ok"] and 9e-4 < d["max_abs"] < 1.1e-3 for d in drift)
    shutil.rmtree(corpus)  # (the cache must not keep a tampered export)


def test_an_artifact_the_new_runtime_cannot_load_breaks(upgraded: dict) -> None:
    """What is shipped (--corpus) holds an artifact whose archive claims a newer TorchScript file format: the new
    runtime cannot load it (BREAK, load (format version)), and the static check says so before anything runs."""
    tmp = upgraded["tmp"]
    future = ROOT / "tests" / "data" / "compat" / "future-format"
    same = ["--to", SAME, "--env", f"{SAME}={sys.executable}:{runner_path()}"]
    plan = ["upgrade", "--corpus", future, "--from", THIS, "--cache", tmp / "cache", *same]
    r = tc(*plan, "--cell", f"ops:{THIS}->{SAME}", "--cell", f"ship:{THIS}->{SAME}", "--out", tmp / "future")
    assert r.returncode == 0, r.stdout + r.stderr  # (the cells ran; the verdict is the merge's)
    r = tc(*plan, "--merge", tmp / "future" / "cells", "--out", tmp / "future-report")
    assert r.returncode == 1, r.stdout + r.stderr
    verdict = json.loads((tmp / "future-report" / "upgrade.json").read_text())["verdicts"][0]
    assert verdict["verdict"] == "BREAK" and verdict["category"] == "load (format version)", verdict
    reasons = " ".join(verdict["reasons"])
    assert "needs file format 99" in reasons and "Attempted to read a PyTorch file with version 99" in reasons


def cells_for(**kw: dict) -> dict:
    base = {"capture:A": {"cell": "capture:A", "models": {"m": {"captured": True, "failed_variants": {},
                                                                "warnings": []}}},
            "capture:B": {"cell": "capture:B", "models": {"m": {"captured": True, "failed_variants": {},
                                                                "warnings": []}}},
            "ops:A->B": {"cell": "ops:A->B", "models": {"m": {"findings": [], "notes": [], "windows": []}}},
            "ship:A->B": {"cell": "ship:A->B", "models": {"m": {"cpp": [], "python": [], "runs": [],
                                                               "warnings": []}}},
            "reexport:A->B": {"cell": "reexport:A->B", "models": {"m": [{"class": "pass", "id": "m/s",
                                                                         "bitwise": True}]}},
            "rollback:B->A": {"cell": "rollback:B->A", "models": {"m": {"cpp": [], "python": []}}},
            "packages:A<->B": {"cell": "packages:A<->B", "linkings": ["as built"],
                               "models": {"m": {"as built": {}, "warnings": []}}}}
    for key, value in kw.items():
        base[key.replace("_", ":", 1).replace("__", "->")] = value
    return base


def test_the_verdict_logic_on_what_real_version_pairs_produce() -> None:
    ok = cells_for()
    assert judge("m", "A", "B", ok).verdict == "PASS"  # the control: clean cells
    load = {"class": compat.LOAD, "id": "m:export@aoti/s", "detail": "AOTIModelPackageLoader failed: undefined symbol"}
    passed = {"class": compat.PASS, "id": "m:export@aoti/s", "detail": ""}
    rebuild = dict(ok)
    rebuild["packages:A<->B"] = {"cell": "packages:A<->B", "linkings": ["as built"], "models": {
        "m": {"as built": {"A->B": [load], "B->B": [passed]}, "warnings": []}}}
    v = judge("m", "A", "B", rebuild)
    assert v.verdict == "REBUILD-REQUIRED" and "fails in torch B's runner" in v.reasons[-1]
    own = dict(rebuild)
    own["packages:A<->B"] = {"cell": "packages:A<->B", "linkings": ["as built"], "models": {
        "m": {"as built": {"B->B": [load]}, "warnings": []}}}
    assert (judge("m", "A", "B", own).verdict, judge("m", "A", "B", own).category) == ("BREAK", "link")
    rollback = dict(ok)
    rollback["rollback:B->A"] = {"cell": "rollback:B->A", "models": {"m": {"cpp": [
        {"class": compat.LOAD, "id": "m/s", "detail": "version 11, but the maximum supported version is 10"}],
        "python": []}}}
    assert judge("m", "A", "B", rollback).verdict == "ROLLBACK-UNSAFE"
    capture = dict(ok)
    capture["capture:B"] = {"cell": "capture:B", "models": {"m": {"captured": False, "error": "trace failed",
                                                                  "failed_variants": {}, "warnings": []}}}
    assert (judge("m", "A", "B", capture).verdict, judge("m", "A", "B", capture).category) == ("BREAK", "capture")
    ops = dict(ok)
    ops["ops:A->B"] = {"cell": "ops:A->B", "models": {"m": {"findings": [
        {"op": "aten::foo.default", "status": "removed", "kind": "ATen", "detail": ""}], "notes": [], "windows": []}}}
    assert (judge("m", "A", "B", ops).verdict, judge("m", "A", "B", ops).category) == ("BREAK", "resolve")
    drift = dict(ok)
    drift["ship:A->B"] = {"cell": "ship:A->B", "models": {"m": {"cpp": [], "python": [], "warnings": [], "runs": [
        {"id": "m/s", "compared": True, "ok": True, "bitwise": False, "max_ulp": 12.0, "max_abs": 1e-7}]}}}
    v = judge("m", "A", "B", drift)
    assert v.verdict == "DRIFT" and v.max_ulp == 12.0
    drift["ship:A->B"]["models"]["m"]["runs"][0]["ok"] = False
    drift["ship:A->B"]["models"]["m"]["runs"][0]["detail"] = "1/4 elements mismatched"
    assert (judge("m", "A", "B", drift).verdict, judge("m", "A", "B", drift).category) == ("BREAK", "numerics")
    broken = dict(ok)
    broken["ship:A->B"] = {"cell": "ship:A->B", "error": "torch B: cannot make its environment", "models": {}}
    v = judge("m", "A", "B", broken)
    assert v.unchecked and exit_status([v], v.unchecked) == 2  # never green on a cell that did not run


def test_waivers_accept_a_known_verdict_until_they_expire(tmp_path: Path) -> None:
    v = judge("m", "A", "B", cells_for(ship_A__B={"cell": "ship:A->B", "models": {"m": {
        "cpp": [{"class": compat.DRIFT, "id": "m/s", "detail": "1/4 elements"}], "python": [], "runs": [],
        "warnings": []}}}))
    assert v.verdict == "BREAK" and exit_status([v], []) == 1
    path = tmp_path / "waivers.json"
    path.write_text(json.dumps({"waivers": [{"model": "m", "verdict": "BREAK", "reason": "known, issue #12",
                                             "expires": "2099-01-01"}]}))
    notes = apply_waivers([v], load_waivers(path), datetime.date(2026, 12, 6))
    assert v.waived.startswith("known, issue #12") and notes == [] and exit_status([v], []) == 0
    v.waived = ""
    path.write_text(json.dumps({"waivers": [{"model": "m", "verdict": "BREAK", "reason": "known",
                                             "expires": "2026-01-01"}]}))
    notes = apply_waivers([v], load_waivers(path), datetime.date(2026, 12, 6))
    assert not v.waived and "expired on 2026-01-01" in notes[0] and exit_status([v], []) == 1
    path.write_text(json.dumps({"waivers": [{"model": "m", "verdict": "BREAK", "reason": "r"}]}))
    with pytest.raises(ValueError, match="without expires"):
        load_waivers(path)


def test_upgrade_refuses_what_it_cannot_check(tmp_path: Path) -> None:
    base = ["upgrade", "--cases", EXAMPLES, "--from", THIS, "--out", tmp_path / "o", "--cache", tmp_path / "c"]
    for args, message in [(["--to", "2.15"], "expected an exact version"),
                          (["--to", "2.15.0", "--with", "torch>=2"], "name torch"),
                          ([], "give --to VERSION"),
                          (["--to", "2.15.0", "--env", "2.15.0"], "expected VERSION=PYTHON"),
                          (["--to", "2.15.0", "--env", f"2.15.0={sys.executable}"], "not 2.15.0"),
                          (["--to", "2.15.0", "--env", f"1.9.0={sys.executable}"], "neither --from nor a --to"),
                          (["--to", "2.15.0", "--env", "2.15.0=/nowhere/python"], "no interpreter")]:
        r = tc_here(*base, *args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    r = tc_here("upgrade", "--from", THIS, "--to", SAME, "--out", tmp_path / "o")
    assert r.returncode == 2 and "give the models" in r.stderr


def test_other_interpreters_get_the_package_without_its_core(tmp_path: Path) -> None:
    from torchconform.tools import envs

    root = envs.portable_package(tmp_path)
    assert (root / "torchconform" / "__init__.py").is_file() and not list(root.rglob("_core*.so"))
    assert envs.same_release("2.15.0+cu130", "2.15.0") and not envs.same_release("2.14.1", "2.15.0")
    assert os.access(root / "torchconform" / "tools" / "upgrade_probe.py", os.R_OK)


def test_a_runner_is_built_into_an_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ci/upgrade.sh's first round, from empty caches, found it: the sources snapshot was moved into runners/ before
    that directory existed (FileNotFoundError, every cell of that version not checked). The build itself (cmake) is
    stubbed here: what is tested is the cache's layout from nothing, and that a second call builds nothing."""
    from torchconform.tools import envs

    built = []

    def fake_cmake(cmd: list[str], log_file: Path, what: str, env: dict | None = None) -> None:
        built.append(what)
        if "--build" in cmd:
            runner = Path(cmd[cmd.index("--build") + 1]) / "cpp_runner" / "torchconform-run"
            runner.parent.mkdir(parents=True, exist_ok=True)
            runner.write_text("")

    monkeypatch.setattr(envs, "run_logged", fake_cmake)
    env = envs.Env("9.9.9", sys.executable, torch="9.9.9+cpu")
    root = tmp_path / "empty-cache"
    runner = Path(envs.build_runner(env, root, lambda m: None))
    assert runner.is_file() and runner.is_relative_to(root / "runners") and len(built) == 2
    again = envs.Env("9.9.9", sys.executable, torch="9.9.9+cpu")
    assert envs.build_runner(again, root, lambda m: None) == str(runner) and len(built) == 2  # cached
