"""Gaps that real models (torchvision, transformers) exposed, each as a small model of the same shape (issue 16)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import rehash, semantic_members

pytestmark = pytest.mark.e2e  # exports and runs the runner


def export(tmp_path: Path, source: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cases.py").write_text(textwrap.dedent(source))
    out = tmp_path / "corpus"
    r = subprocess.run([sys.executable, "-m", "torchconform", "export", "--cases", str(tmp_path / "cases.py"),
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def results(run_cli, corpus: Path, *extra: str | Path) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    report = corpus.parent / "r.json"
    r = run_cli(corpus, "--json", report, "--quiet", *extra)
    return r, json.loads(report.read_text())["results"]


TYPED_CONTAINERS = """
    from typing import Dict, List, Optional, Tuple
    import torch
    from torch import nn
    import torchconform as tc

    class Stack(nn.Module):  # torchvision's detection models take List[Tensor]
        def forward(self, xs: List[torch.Tensor], scale: Optional[float] = None) -> torch.Tensor:
            out = torch.stack(xs).sum(0)
            return out if scale is None else out * scale

    class Mix(nn.Module):
        def forward(self, d: Dict[str, torch.Tensor]) -> torch.Tensor:
            return d["a"] + 2 * d["b"]

    class Nested(nn.Module):
        def forward(self, x: Tuple[List[torch.Tensor], Dict[str, List[torch.Tensor]]],
                    extra: Optional[List[torch.Tensor]]) -> torch.Tensor:
            total = torch.stack(x[0]).sum(0)
            for k in sorted(x[1].keys()):
                total = total + torch.stack(x[1][k]).sum(0)
            if extra is not None:
                total = total + torch.stack(extra).sum(0)
            return total

    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)
    tc.declare("stack", model=Stack, mode="script", inputs={
        "three": ([r(2, 3), r(2, 3), r(2, 3)],), "scaled": ([r(4), r(4)], 0.5), "one": ([r(5)],)})
    tc.declare("mix", model=Mix, mode="script", inputs={"ab": ({"a": r(3), "b": r(3)},)})
    tc.declare("nested", model=Nested, mode="script", inputs={
        "full": (([r(2), r(2)], {"p": [r(2)], "q": [r(2), r(2)]}), [r(2)]),
        "none": (([r(2)], {"p": [r(2)]}), None)})
"""


def test_typed_container_inputs_reach_torchscript_as_the_schema_types(tmp_path: Path, run_cli) -> None:
    """A pickled list is a List[Any] in C++ (a dict a Dict[Any, Any]); TorchScript refused them for List[Tensor] and
    Dict[str, Tensor] parameters ("Expected a value of type 'List[Tensor]' ... but instead found type 'List[Any]'").
    The runner rebuilds them with the method schema's types, nested and optional ones included."""
    corpus = export(tmp_path, TYPED_CONTAINERS)
    r, rows = results(run_cli, corpus)
    assert r.returncode == 0, r.stdout
    assert {(x["case"], x["input_set"], x["verdict"]) for x in rows if not x["artifact"]} == {
        ("stack", "three", "PASS"), ("stack", "scaled", "PASS"), ("stack", "one", "PASS"), ("mix", "ab", "PASS"),
        ("nested", "full", "PASS"), ("nested", "none", "PASS")}
    # Negative control: a value that does not fit the schema is not coerced; the call's type check refuses it and
    # the result is an ERROR of kind call naming the argument (re-signed, so it gets past the hash check).
    path = corpus / "stack" / "sets" / "three.inputs.pt"
    torch.save(([1, 2, 3],), path)
    rehash(corpus, "stack")
    r, rows = results(run_cli, corpus)
    bad = next(x for x in rows if (x["case"], x["input_set"], x["artifact"]) == ("stack", "three", ""))
    assert bad["verdict"] == "ERROR" and bad["error_kind"] == "call" and "xs" in bad["error"], bad


DEFAULTS = """
    import torch
    import torchconform as tc

    def shift(a: torch.Tensor, b: torch.Tensor, fmt: str = "xyxy") -> torch.Tensor:  # a box-IoU style flag
        return a + b if fmt == "xyxy" else a - b

    g = torch.Generator().manual_seed(0)
    tc.declare("shift", model=lambda: shift, mode="script_function", inputs={
        "explicit": (torch.randn(3, generator=g), torch.randn(3, generator=g), "cxcywh"),
        DEFAULTED})
"""


def test_a_default_the_saved_function_lost_is_an_export_error(tmp_path: Path, run_cli) -> None:
    """ScriptFunction.save drops defaults: `fmt: str = "xyxy"` is a required `fmt` in the saved file, so a set that
    relied on the default failed only in C++ ("forward() is missing value for argument 'fmt'"). The exporter checks
    every call against the saved artifact's schema and names the argument."""
    (tmp_path / "bad").mkdir()
    source = DEFAULTS.replace("DEFAULTED", '"defaulted": (torch.randn(3, generator=g), torch.randn(3, generator=g))')
    (tmp_path / "bad" / "cases.py").write_text(textwrap.dedent(source))
    r = subprocess.run([sys.executable, "-m", "torchconform", "export", "--cases", str(tmp_path / "bad" / "cases.py"),
                        "--out", str(tmp_path / "bad" / "corpus")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "input set 'defaulted'" in r.stderr and "no default for 'fmt'" in r.stderr, r.stderr
    assert not (tmp_path / "bad" / "corpus").exists()
    # Control: the same function with the argument passed exports and passes in C++.
    source = DEFAULTS.replace("DEFAULTED", '"passed": (torch.randn(3, generator=g), torch.randn(3, generator=g), '
                                           '"xyxy")')
    corpus = export(tmp_path, source)
    r, rows = results(run_cli, corpus)
    assert r.returncode == 0 and {x["verdict"] for x in rows} == {"PASS"}, r.stdout


SMALL = """
    import torch
    from torch import nn
    import torchconform as tc

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return torch.relu(self.lin(x))

    tc.declare("block", model=Block, mode="script", export=tc.Export(),
               inputs={"a": (torch.randn(2, 4, generator=torch.Generator().manual_seed(0)),)})
"""


def test_a_cases_file_gives_the_same_bytes_from_any_checkout(tmp_path: Path) -> None:
    """The same cases file exported in two places, by two processes: the same artifact and program bytes (so the
    same hashes and AOTInductor cache keys). The module name used to come from hash() of the absolute path (different
    per process and per checkout) and went into TorchScript's class names; the program kept the file's absolute
    path in its stack traces. The report says where the case was declared by the file's name."""
    corpora = [export(tmp_path / where, SMALL) for where in ("one", "elsewhere/two")]
    files = sorted(p.relative_to(corpora[0]) for p in corpora[0].rglob("*") if p.suffix in (".pt", ".pt2"))
    assert Path("block/artifact.pt") in files and Path("block/variants/export.pt2") in files
    # Programs byte for byte; TorchScript archives in what they run (code, constants, weights): their debug_pkl
    # records keep the tracing stack, and serialization_id is random per save.
    assert [f for f in files if f.suffix == ".pt2" and (corpora[0] / f).read_bytes() != (corpora[1] / f).read_bytes()
            or semantic_members(corpora[0] / f) != semantic_members(corpora[1] / f)] == []
    assert any("torchconform_cases/cases.py" in n for n in semantic_members(corpora[0] / "block" / "artifact.pt"))
    assert str(tmp_path).encode() not in (corpora[0] / "block" / "variants" / "export.pt2").read_bytes()
    manifest = json.loads((corpora[0] / "block" / "manifest.json").read_text())
    assert manifest["model"] == "Block (user case, declared in cases.py)", manifest["model"]


KEEP_GOING = """
    import torch
    from torch import nn
    import torchconform as tc

    def broken():
        raise RuntimeError("this model does not build")

    tc.declare("good", model=lambda: nn.Linear(3, 2), mode="script", inputs={"a": (torch.ones(2, 3),)})
    tc.declare("bad_one", model=broken, mode="script", inputs={"a": (torch.ones(2, 3),)})
    tc.declare("bad_two", model=lambda: nn.Linear(3, 2), mode="trace", inputs={"a": (torch.ones(2, 4),)})
"""


def test_every_failing_case_is_reported_and_keep_going_writes_the_others(tmp_path: Path, run_cli) -> None:
    """One bad case used to throw the whole export away at the first failure, naming only that one."""
    (tmp_path / "cases.py").write_text(textwrap.dedent(KEEP_GOING))

    def export_cli(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "torchconform", "export", "--cases", str(tmp_path / "cases.py"),
                               "--out", str(tmp_path / "corpus"), *extra], capture_output=True, text=True,
                              timeout=600)

    r = export_cli()
    assert r.returncode == 2 and "2 of 3 cases failed to export (nothing written" in r.stderr, r.stderr
    assert "case 'bad_one'" in r.stderr and "case 'bad_two'" in r.stderr and "does not build" in r.stderr
    assert not (tmp_path / "corpus").exists()
    r = export_cli("--keep-going")
    assert r.returncode == 2 and "2 cases failed and are not in" in r.stderr, r.stderr
    index = json.loads((tmp_path / "corpus" / "corpus.json").read_text())
    assert [c["name"] for c in index["cases"]] == ["good"]
    assert run_cli(tmp_path / "corpus", "--quiet").returncode == 0


CONVNET = """
    import torch
    from torch import nn
    import torchconform as tc

    def convnet():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

    tc.declare("convnet", model=convnet, mode="trace", inputs={"a": (torch.randn(2, 3, 8, 8),)},
               optimizations=OPTIMIZATIONS)
"""


def test_user_cases_mark_and_tolerate_one_variant(tmp_path: Path, run_cli) -> None:
    """optimizations=True on any CPU convnet ended in exit 2 (optimize_for_inference's file does not load again) and
    a case-level xfail would mark the variants that pass as well; now each variant takes its own mark and policy."""
    plain = export(tmp_path / "plain", CONVNET.replace("OPTIMIZATIONS", "True"))
    r, rows = results(run_cli, plain)
    assert r.returncode == 2 and {x["verdict"] for x in rows if x["artifact"] == "optimized"} == {"ERROR"}, r.stdout
    marked = export(tmp_path / "marked", CONVNET.replace("OPTIMIZATIONS", (
        'tc.Optimizations(xfail={"optimized": tc.XFail("MKLDNN constants do not serialize")}, '
        'tolerance={"frozen": {"default": {"mode": "allclose", "rtol": 1e-3, "atol": 1e-3}}})')))
    r, rows = results(run_cli, marked)
    assert r.returncode == 0, r.stdout
    verdicts = {x["artifact"]: x["verdict"] for x in rows}
    assert verdicts == {"": "PASS", "frozen": "PASS", "optimized": "XFAIL", "passes": "PASS"}, verdicts
    frozen = next(x for x in rows if x["artifact"] == "frozen")
    assert frozen["loosened"] and "LOOSENED" in next(ln for ln in run_cli(marked).stdout.splitlines()
                                                     if ln.startswith("PASS  convnet:frozen/"))
    # A mark for a variant that does not exist is an error naming it.
    bad = CONVNET.replace("OPTIMIZATIONS", 'tc.Optimizations(xfail={"optimised": "typo"})')
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cases.py").write_text(textwrap.dedent(bad))
    r = subprocess.run([sys.executable, "-m", "torchconform", "export", "--cases", str(tmp_path / "bad" / "cases.py"),
                        "--out", str(tmp_path / "bad" / "c")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "unknown TorchScript variant(s) ['optimised']" in r.stderr, r.stderr


def test_the_pytest_plugin_selects_cases_and_threads(tmp_path: Path) -> None:
    from conftest import GOLDEN, planned

    def plugin(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", f"--torchconform-corpus={GOLDEN}", "-q",
                               "-p", "no:cacheprovider", "-o", "addopts=", *extra], capture_output=True, text=True,
                              cwd=tmp_path, timeout=600)

    r = plugin("--torchconform-case", "simple_*", "--torchconform-threads", "1")
    rows = [p for p in planned() if p["case"] == "simple_cnn"]
    n_xfail = sum(1 for p in rows if p["xfail"])
    assert r.returncode == 0 and f"{len(rows) - n_xfail} passed, {n_xfail} xfailed" in r.stdout, r.stdout + r.stderr
    r = plugin("--torchconform-case", "nope")
    assert r.returncode == 4 and "--case 'nope' matches no case" in r.stdout + r.stderr, r.stdout + r.stderr
    r = plugin("--torchconform-threads", "0")
    assert r.returncode == 4 and "--torchconform-threads expects an integer >= 1" in r.stdout + r.stderr


NAMEDTUPLE = """
    from typing import NamedTuple
    import torch
    from torch import nn
    import torchconform as tc

    class Out(NamedTuple):
        logits: torch.Tensor
        probs: torch.Tensor

    class Head(nn.Module):
        def forward(self, x):
            return Out(x * 2, torch.softmax(x, -1))

    tc.declare("head", model=Head, mode="export", inputs={"a": (torch.randn(2, 3),)})
"""


def test_a_program_that_does_not_serialize_is_an_error_naming_the_case(tmp_path: Path) -> None:
    """A namedtuple output in mode export crashed `torchconform export` with a traceback (torch.export.save:
    "Can't serialize TreeSpec of namedtuple")."""
    (tmp_path / "cases.py").write_text(textwrap.dedent(NAMEDTUPLE))
    r = subprocess.run([sys.executable, "-m", "torchconform", "export", "--cases", str(tmp_path / "cases.py"),
                        "--out", str(tmp_path / "c")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "case 'head': variant 'export': the captured program does not save and load again" in r.stderr, r.stderr


DEGENERATE = """
    import torch
    from torch import nn
    import torchconform as tc

    class ZeroHead(nn.Module):  # torchvision zero-initialises the ViT head
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 3)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

        def forward(self, x):
            return self.head(x), x * 1e-9, x[:0], x

    tc.declare("zero_head", model=ZeroHead, mode="script", inputs={"a": (torch.randn(2, 4),)}ALLOW)
"""


def test_goldens_that_check_little_are_warned_about(tmp_path: Path, run_cli) -> None:
    """All-zero outputs, magnitudes below atol and empty outputs passed silently; now they are warned about at export,
    recorded per set and listed in the report, unless the case says it means them."""
    (tmp_path / "warn").mkdir()
    (tmp_path / "warn" / "cases.py").write_text(textwrap.dedent(DEGENERATE.replace("ALLOW", "")))
    r = subprocess.run([sys.executable, "-m", "torchconform", "export", "--cases", str(tmp_path / "warn" / "cases.py"),
                        "--out", str(tmp_path / "warn" / "c")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    weak = json.loads((tmp_path / "warn" / "c" / "zero_head" / "manifest.json").read_text())["input_sets"][0]
    assert [w.split(":")[0] for w in weak["degenerate"]] == ["$[0]", "$[1]", "$[2]"], weak  # not $[3]: real values
    assert "constant" in weak["degenerate"][0] and "within atol" in weak["degenerate"][1]
    assert "empty tensor" in weak["degenerate"][2] and r.stderr.count("the golden checks little") == 3, r.stderr
    assert run_cli(tmp_path / "warn" / "c", "--quiet").returncode == 0  # still a pass: a warning, not a verdict
    report = subprocess.run([sys.executable, "-m", "torchconform", "report", str(tmp_path / "warn" / "c"), "--quiet"],
                            capture_output=True, text=True, timeout=600)
    assert "**Goldens that check little** (3)" in report.stdout and "zero\\_head/a: $\\[0\\]" in report.stdout
    # Opted out: nothing recorded, nothing printed.
    corpus = export(tmp_path / "ok", DEGENERATE.replace("ALLOW", ", allow_degenerate=True"))
    assert "degenerate" not in json.loads((corpus / "zero_head" / "manifest.json").read_text())["input_sets"][0]


GUARDS = """
    import torch
    from torch import nn
    import torchconform as tc

    class Center(nn.Module):
        def forward(self, x):
            return x - x.mean(0)

    g = torch.Generator().manual_seed(0)
    tc.declare("center", model=Center, mode="script", export=tc.Export(),  # static shapes: batch 3
               inputs={"b3": (torch.randn(3, 4, generator=g),), "b5": (torch.randn(5, 4, generator=g),),
                       "b2": (torch.randn(2, 4, generator=g),)})
"""


def test_a_set_outside_a_programs_guards_is_reported_at_export(tmp_path: Path) -> None:
    """A program exported with a static batch of 3, declared for sets of 5 and 2 rows: the exporter recorded Python's
    "Guard failed" in the manifest and said nothing. It now prints what Python saw for every variant and set at
    export. (The runner does not refuse such sets yet: AOTInductor's own check, AOTI_RUNTIME_CHECK_INPUTS, is
    stricter than the program's recorded ranges: a package for a dynamic batch of min 1 checks it as >= 2.)"""
    (tmp_path / "cases.py").write_text(textwrap.dedent(GUARDS))
    r = subprocess.run([sys.executable, "-m", "torchconform", "export", "--cases", str(tmp_path / "cases.py"),
                        "--out", str(tmp_path / "corpus")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    warned = [ln for ln in r.stderr.splitlines() if "the variant fails this set in Python" in ln]
    assert [ln.split(":export/")[1].split(":")[0] for ln in warned] == ["b5", "b2"], r.stderr  # not b3
