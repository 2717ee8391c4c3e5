"""A PASS covers what the artifact accepts (issue 30, docs/coverage.md): the sets export generates at the bounds of
every dynamic dimension and the trace example at batch 1, `torchconform fuzz`, and the golden sensitivity rule. The
negative controls are real divergences that only show outside the written sets: an operator library whose C++ kernel
is wrong past batch 8 while its Python twin is right (tests/cpp/divergent_op.cpp), and a trace that fixed its
example's batch."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import ROOT, tc
from torchconform.writing.coverage import inside_value, resize

pytestmark = pytest.mark.xdist_group("coverage")

LIBRARY = ROOT / "build" / "tests" / "cpp" / "libtc_divergent_op.so"

DIVERGENT = """
    import torch
    from torch import nn
    from torch.export import Dim
    import torchconform as tc

    # The Python twin of tests/cpp/divergent_op.cpp: right for every batch.
    LIB = torch.library.Library("tcdiverge", "DEF")
    LIB.define("scale(Tensor x) -> Tensor")
    LIB.impl("scale", lambda x: x * 2, "CPU")
    torch.library.register_fake("tcdiverge::scale")(lambda x: torch.empty_like(x))

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 4)

        def forward(self, x):
            return torch.ops.tcdiverge.scale(self.lin(x))

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 4)

        def forward(self, x):
            return self.lin(x).relu()

    g = torch.Generator().manual_seed(0)
    batch = ({0: Dim("batch", min=1, max=32)},)
    tc.declare("divergent_head", model=Head, mode="script", export=tc.Export(dynamic_shapes=batch),
               inputs={"b2": (torch.randn(2, 6, generator=g),), "b4": (torch.randn(4, 6, generator=g),)})
    tc.declare("plain_head", model=Plain, mode="script", export=tc.Export(dynamic_shapes=batch),
               inputs={"b3": (torch.randn(3, 6, generator=g),)})
"""

TRACED = """
    import torch
    from torch import nn
    import torchconform as tc

    class Positions(nn.Module):  # int() of a size: the trace keeps the example's batch as a constant
        def forward(self, x):
            return x.sum(1) + torch.arange(int(x.shape[0]))

    g = torch.Generator().manual_seed(0)
    tc.declare("fixed_batch", model=Positions, mode="trace",
               inputs={"b4": (torch.randn(4, 5, generator=g),), "b4_other": (torch.randn(4, 5, generator=g),)})
"""

SENSITIVITY = """
    import torch
    from torch import nn
    import torchconform as tc

    class Tiny(nn.Module):  # logits of at most ~5 x atol: a runtime 20% off everywhere passes
        def forward(self, x):
            return x * 5e-5

    class Normal(nn.Module):
        def forward(self, x):
            return x * 3.0

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, generator=g) + 0.5
    tc.declare("tiny_logits", model=Tiny, mode="script", inputs={"a": (x,)})
    tc.declare("normal_logits", model=Normal, mode="script", inputs={"a": (x,)})
"""


def write_cases(tmp_path: Path, source: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cases.py"
    path.write_text(textwrap.dedent(source))
    return path


def export(cases: Path, out: Path, *extra: str):
    r = tc("export", "--cases", cases, "--out", out, "--force", *extra)
    assert r.returncode == 0, r.stderr
    return r


def verify(corpus: Path, *extra: str | Path) -> tuple[int, dict[str, str]]:
    report = corpus.parent / f"{corpus.name}.report.json"
    r = tc("verify", corpus, "--json", report, "--quiet", *extra)
    rows = json.loads(report.read_text())["results"]
    ids = {(x["case"] + (":" + x["artifact"] if x["artifact"] else "") + "/" + x["input_set"]): x["verdict"]
           for x in rows}
    return r.returncode, ids


@pytest.fixture(scope="module")
def library() -> Path:
    if not LIBRARY.is_file():
        pytest.fail(f"{LIBRARY} is missing: ci/build.sh builds it with the tests")
    return LIBRARY


def test_inside_values_are_typical_sizes_that_are_not_powers_of_two() -> None:
    assert inside_value(1, 64, {1}) == 7
    assert inside_value(8, 512, {32}) == 63
    assert inside_value(1, 3, set()) is None  # 2 is the only size inside, and a power of two
    assert inside_value(1, 1 << 29, set()) == 23170  # found without walking the range


def test_resize_slices_and_repeats_with_valid_values() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[3, 1, 4], [1, 5, 9]])
    grown = resize(ids, 1, 7, g)
    assert grown.tolist() == [[3, 1, 4, 3, 1, 4, 3], [1, 5, 9, 1, 5, 9, 1]]  # token ids stay the example's
    assert resize(ids, 0, 1, g).tolist() == [[3, 1, 4]]
    x = torch.randn(2, 3, generator=g)
    big = resize(x, 0, 5, g)
    assert torch.equal(big[:2], x) and not torch.equal(big[2:4], x)  # repeats are jittered, the example is kept
    assert torch.allclose(big[2:4], x, rtol=0.5)


def test_bound_sets_find_a_kernel_that_is_wrong_past_the_written_batches(tmp_path: Path, library: Path) -> None:
    cases = write_cases(tmp_path, DIVERGENT)
    corpus = tmp_path / "corpus"
    r = export(cases, corpus, "--case", "divergent_head")
    m = json.loads((corpus / "divergent_head" / "manifest.json").read_text())
    generated = {s["name"]: s["generated"] for s in m["input_sets"] if "generated" in s}
    assert {g["bound"]: g["size"] for g in generated.values()} == {"min": 1, "max": 32, "inside": 6}, generated
    assert m["coverage"]["generated"] == list(generated) and "at the programs' bounds" in r.stderr
    program = next(v for v in m["variants"] if v["kind"] == "exported_program")
    assert set(generated) <= set(program["input_sets"])  # the program runs them too, not only the TorchScript artifact
    c = tc("compile", corpus, "--load-library", library)
    assert c.returncode == 0, c.stderr
    code, ids = verify(corpus, "--load-library", library)
    assert code == 1, ids
    failed = {k for k, v in ids.items() if v == "FAIL"}
    assert failed == {"divergent_head/bound_in0_d0_max", "divergent_head:export@aoti/bound_in0_d0_max"}, ids
    assert all(v == "PASS" for k, v in ids.items() if k not in failed), ids

    # Negative control: the written sets alone (batches 2 and 4) pass, although the kernel is wrong past 8.
    bare = tmp_path / "bare"
    export(cases, bare, "--case", "divergent_head", "--no-bound-sets")
    assert "coverage" not in json.loads((bare / "divergent_head" / "manifest.json").read_text())
    c = tc("compile", bare, "--load-library", library)
    code, ids = verify(bare, "--load-library", library)
    assert code == 0 and set(ids.values()) == {"PASS"}, ids


def test_fuzz_finds_shrinks_and_saves_the_divergence(tmp_path: Path, library: Path) -> None:
    cases = write_cases(tmp_path, DIVERGENT)
    corpus = tmp_path / "corpus"
    export(cases, corpus, "--no-bound-sets")
    f = tc("fuzz", corpus, "--cases", cases, "--artifact", "divergent_head", "--artifact", "plain_head",
           "--load-library", library, "--examples", "40", "--budget", "120", "--seed", "7")
    assert f.returncode == 1, f.stdout + f.stderr
    assert "[fuzz] seed 7 (--seed 7 repeats this run)" in f.stderr
    assert "DIVERGENCE divergent_head: differs from the eager model" in f.stdout, f.stdout
    assert "shrunk to inputs [9,6] (s" in f.stdout, f.stdout  # the smallest failing batch
    assert "plain_head: no divergence" in f.stdout, f.stdout  # negative control: a model that agrees
    saved = sorted((tmp_path / "cases.regressions" / "divergent_head").glob("*.pt"))
    assert len(saved) == 1 and saved[0].stem.startswith("fuzz_torchscript_"), saved
    assert not (tmp_path / "cases.regressions" / "plain_head").exists()

    # What fuzz found is an input set of the case at every export from now on, and fails there.
    again = tmp_path / "again"
    r = export(cases, again, "--no-bound-sets")
    assert "saved by torchconform fuzz" in r.stderr, r.stderr
    m = json.loads((again / "divergent_head" / "manifest.json").read_text())
    found = next(s for s in m["input_sets"] if s["name"] == saved[0].stem)
    assert found["generated"]["by"] == "fuzz" and found["inputs_signature"] == "(Tensor[9,6] float32,)"
    c = tc("compile", again, "--load-library", library)
    assert c.returncode == 0, c.stderr
    code, ids = verify(again, "--load-library", library, "--case", "divergent_head")
    assert code == 1 and ids[f"divergent_head/{saved[0].stem}"] == "FAIL", ids
    assert ids[f"divergent_head:export@aoti/{saved[0].stem}"] == "FAIL", ids

    # The same seed repeats the run: the same input is found again.
    shutil.rmtree(tmp_path / "cases.regressions")
    f2 = tc("fuzz", corpus, "--cases", cases, "--artifact", "divergent_head", "--load-library", library,
            "--examples", "40", "--budget", "120", "--seed", "7")
    assert f2.returncode == 1 and [p.name for p in (tmp_path / "cases.regressions" / "divergent_head").glob("*.pt")
                                   ] == [saved[0].name], f2.stdout


def test_fuzz_refuses_a_corpus_of_other_cases(tmp_path: Path) -> None:
    cases = write_cases(tmp_path, DIVERGENT.replace("manual_seed(0)", "manual_seed(1)"))
    other = write_cases(tmp_path / "other", DIVERGENT)
    corpus = tmp_path / "corpus"
    export(other, corpus, "--no-bound-sets", "--case", "plain_head")
    f = tc("fuzz", corpus, "--cases", cases, "--case", "plain_head", "--examples", "2")
    assert f.returncode == 2 and "does not give the corpus's golden" in f.stderr, f.stderr


def test_a_trace_is_checked_at_batch_1(tmp_path: Path) -> None:
    cases = write_cases(tmp_path, TRACED)
    corpus = tmp_path / "corpus"
    r = export(cases, corpus)
    assert "the trace example at batch 1: trace_batch1" in r.stderr, r.stderr
    code, ids = verify(corpus)
    assert code == 1 and ids == {"fixed_batch/b4": "PASS", "fixed_batch/b4_other": "PASS",
                                 "fixed_batch/trace_batch1": "FAIL"}, ids
    bare = tmp_path / "bare"
    export(cases, bare, "--no-bound-sets")  # negative control: the written sets (batch 4) pass
    code, ids = verify(bare)
    assert code == 0 and set(ids.values()) == {"PASS"}, ids


def test_a_golden_whose_tolerance_hides_a_large_relative_error_is_warned(tmp_path: Path) -> None:
    cases = write_cases(tmp_path, SENSITIVITY)
    corpus = tmp_path / "corpus"
    r = export(cases, corpus)
    warned = [ln for ln in r.stderr.splitlines() if ln.lstrip().startswith("warning:") and "golden checks little" in ln]
    assert len(warned) == 1 and "tiny_logits/a" in warned[0] and "on most" in warned[0], r.stderr
    tiny = json.loads((corpus / "tiny_logits" / "manifest.json").read_text())["input_sets"][0]
    assert tiny["degenerate"] and "normal" not in json.dumps(tiny)
    report = tmp_path / "r.json"
    v = tc("verify", corpus, "--json", report)
    assert v.returncode == 0, v.stdout
    leaves = {x["case"]: x["leaves"][0] for x in json.loads(report.read_text())["results"]}
    assert leaves["tiny_logits"]["weak"] and leaves["tiny_logits"]["accepts_rel_error_median"] > 0.1
    assert leaves["normal_logits"]["weak"] == "" and leaves["normal_logits"]["accepts_rel_error_median"] < 0.01
    assert "1 on a golden that checks little" in v.stdout, v.stdout
    # The threshold is the user's: at 50% the tiny logits are sensitive enough, and the runner agrees.
    quiet = tmp_path / "quiet"
    r = export(cases, quiet, "--sensitivity", "0.5")
    assert "golden checks little" not in r.stderr, r.stderr
    v = tc("verify", quiet, "--sensitivity", "0.5")
    assert v.returncode == 0 and "checks little" not in v.stdout, v.stdout
