"""Gaps that real models (torchvision, transformers) exposed, each as a small model of the same shape (issue 16)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import rehash

pytestmark = pytest.mark.e2e  # exports and runs the runner


def export(tmp_path: Path, source: str) -> Path:
    (tmp_path / "cases.py").write_text(textwrap.dedent(source))
    out = tmp_path / "corpus"
    r = subprocess.run([sys.executable, "-m", "torchconform", "export", "--cases", str(tmp_path / "cases.py"),
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def results(run_cli, corpus: Path) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    report = corpus.parent / "r.json"
    r = run_cli(corpus, "--json", report, "--quiet")
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
