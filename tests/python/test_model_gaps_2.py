"""What the second round of real models found around the verdicts (issue 31), each as a small model of the same
shape: what export says about what it knows, the messages that named the wrong cause, and the small ones."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import GOLDEN, TC, tc
from torchconform.verification import runner_executable

pytestmark = pytest.mark.xdist_group("model_gaps_2")

CONVNET = """
    import torch
    from torch import nn
    import torchconform as tc

    class Net(nn.Module):  # a traced convnet with optimizations: optimize_for_inference bakes MKLDNN constants
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(self.conv(x)).relu()

    g = torch.Generator().manual_seed(0)
    tc.declare("convnet", model=Net, mode="trace", optimizations=True,
               inputs={"a": (torch.randn(1, 3, 8, 8, generator=g),)})
"""

OPTIONAL_KEYWORD = """
    from typing import Optional
    import torch
    from torch import nn
    import torchconform as tc

    class Masked(nn.Module):
        def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None):
            return x if mask is None else x * mask

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, generator=g)
    tc.declare("masked", model=Masked, mode="trace",
               inputs={"with_mask": tc.Inputs((x,), kwargs={"mask": torch.ones(2, 3)}), "no_mask": (x,)})
"""


def write(tmp_path: Path, source: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cases.py").write_text(textwrap.dedent(source))
    return tmp_path / "cases.py"


def test_export_says_a_variant_python_cannot_reload_and_verify_says_python_fails_too(tmp_path: Path) -> None:
    """5: optimizations=True on a traced convnet: the `optimized` variant does not reload in Python (MKLDNN constants
    are not serialized). Export recorded it, printed nothing and exited 0; the user met it as unexplained ERROR lines
    at verify. Now export warns under the case and in its closing summary, and the runner's ERROR says that Python
    fails the same way and how to mark it."""
    cases = write(tmp_path, CONVNET)
    corpus = tmp_path / "corpus"
    r = tc("export", "--cases", cases, "--out", corpus)
    assert r.returncode == 0, r.stderr
    assert "warning: convnet:optimized: PyTorch cannot reload the saved variant in Python" in r.stderr, r.stderr
    summary = r.stderr[r.stderr.index("findings of this export"):]
    assert "convnet:optimized: PyTorch cannot reload" in summary and "tc.Optimizations(xfail=" in summary
    v = tc("verify", corpus)
    errors = [ln for ln in v.stdout.splitlines() if ln.startswith("ERROR convnet:optimized/")]
    assert v.returncode == 2 and errors, v.stdout
    assert all("Python's torch.jit.load fails on this variant too" in ln for ln in errors), errors
    # the control: the other variants load and pass
    assert all(ln.startswith(("PASS", "ERROR convnet:optimized/")) for ln in v.stdout.splitlines()
               if ln.startswith(("PASS", "FAIL", "ERROR"))), v.stdout


def test_a_trace_that_made_an_argument_required_is_named_as_the_cause(tmp_path: Path) -> None:
    """6: a traced case whose example passes an optional argument by keyword, with a set that leaves it out, was
    refused with "TorchScript's save drops a scripted function's defaults": nothing was scripted."""
    r = tc("export", "--cases", write(tmp_path, OPTIONAL_KEYWORD), "--out", tmp_path / "c")
    assert r.returncode == 2, r.stderr
    assert "torch.jit.trace made 'mask' required" in r.stderr and "script the model" in r.stderr, r.stderr
    assert "drops a scripted function's defaults" not in r.stderr
    # the control: scripted, the same sets export (Optional defaults survive scripting)
    ok = tc("export", "--cases", write(tmp_path / "s", OPTIONAL_KEYWORD.replace('mode="trace"', 'mode="script"')),
            "--out", tmp_path / "s" / "c")
    assert ok.returncode == 0, ok.stderr


def test_export_prints_the_corpus_size_and_warns_past_a_budget(tmp_path: Path) -> None:
    """7: export printed sizes per case but no total, and no warning for a 1.4 GB corpus."""
    r = tc("export", "--case", "process_outputs", "--out", tmp_path / "c", "--no-bound-sets")
    assert r.returncode == 0 and " MB, " in r.stderr.splitlines()[-1] and "over the" not in r.stderr, r.stderr
    small = tc("export", "--case", "process_outputs", "--out", tmp_path / "d", "--size-budget-mb", "0.01")
    assert small.returncode == 0 and "over the 0.01 MB budget (--size-budget-mb)" in small.stderr, small.stderr


def test_verify_list_prints_the_plan_from_the_python_face_too() -> None:
    """`torchconform verify --list` built no report and then failed to parse it (a traceback after the ids)."""
    r = tc("verify", GOLDEN, "--list", timeout=120)
    cpp = subprocess.run([runner_executable(), str(GOLDEN), "--list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == cpp.stdout and "simple_cnn/trace_example\n" in r.stdout, (r.stdout, cpp.stdout)


def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path: Path) -> None:
    """8: `torchconform verify CORPUS --list | head` ended in a BrokenPipeError traceback. The reader here is gone
    before the command writes its first line (a reader that closes later may find everything already written into
    the pipe's buffer, and then nothing breaks). The control: the same command into an open pipe exits 0."""
    import os

    read, write = os.pipe()
    os.close(read)  # what `head -1` does once it has its line
    try:
        r = subprocess.run([*TC, "verify", str(GOLDEN), "--list"],
                           stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr
    assert r.returncode == 141, r.returncode
    control = tc("verify", GOLDEN, "--list", timeout=120)
    assert control.returncode == 0 and control.stdout.count("\n") > 50, control.stderr


def test_bench_says_why_there_is_no_plot(tmp_path: Path) -> None:
    """8: `bench --skip-models` said "no plot: matplotlib is not installed" with matplotlib installed."""
    pytest.importorskip("matplotlib")
    r = tc("bench", GOLDEN, "--out", tmp_path / "b", "--skip-models", "--skip-suite", "--skip-compile",
           "--skip-spec", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "(no plot: no model rows to plot" in r.stdout and "matplotlib is not installed" not in r.stdout, r.stdout


NOISY = """
    import torch
    from torch import nn
    import torchconform as tc

    class Noisy(nn.Module):  # draws random numbers, checked on a seeded set (ViT-MAE's random masking)
        def forward(self, x):
            return x + torch.rand_like(x)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, generator=g)
    tc.declare("noisy", model=Noisy, mode="export", inputs={"seeded": tc.Inputs((x,), seed=3)})
    tc.declare("noisy_fallback", model=Noisy, mode="export", export=tc.Export(aoti_options={"fallback_random": True}),
               inputs={"seeded": tc.Inputs((x,), seed=3)})
"""


@pytest.mark.heavy  # (default tier: its time; the heavy tier runs it)
def test_aoti_options_reach_the_package_and_its_key(tmp_path: Path) -> None:
    """2: AOTInductor's own options could not be given (a seeded ViT-MAE matched eager only with fallback_random).
    tc.Export(aoti_options=...) is recorded in the manifest, compiled with, and part of the package's key; export says
    when a program that draws random numbers is checked on a seeded set. The control: the same program without the
    option draws AOTInductor's own numbers and FAILs."""
    cases = write(tmp_path, NOISY)
    corpus = tmp_path / "corpus"
    r = tc("export", "--cases", cases, "--out", corpus)
    assert r.returncode == 0, r.stderr
    warned = [ln for ln in r.stderr.splitlines() if "AOTInductor reproduces eager's draws only with fallback_random"
              in ln and ln.startswith("  warning: ")]
    assert len(warned) == 1 and "noisy:export" in warned[0], r.stderr  # not the case that sets the option
    cache = tmp_path / "cache"  # (its own: the count below must not depend on what the user's cache holds)
    c = tc("compile", corpus, "--aoti-cache", cache)
    assert c.returncode == 0 and "2 compiled" in c.stdout, c.stdout + c.stderr  # same graph, other options: 2 keys
    v = tc("verify", corpus, "--aoti-cache", cache)
    lines = {ln.split()[1]: ln.split()[0] for ln in v.stdout.splitlines() if ln.startswith(("PASS", "FAIL"))}
    assert lines == {"noisy:export@aoti/seeded": "FAIL", "noisy_fallback:export@aoti/seeded": "PASS"}, v.stdout


@pytest.mark.heavy  # (default tier: its time; the heavy tier runs it)
def test_the_package_key_ignores_where_the_source_lines_sit(tmp_path: Path) -> None:
    """3: the package cache's key was the program file's hash, which holds stack traces with the cases file's line
    numbers: an edit above a model class recompiled its package (17-194 s per program). The key now covers what the
    package depends on (graph, weights, options), so the moved model reuses its package, and a changed weight does
    not."""
    from torchconform import _core

    source = textwrap.dedent(NOISY)
    keys, digests = [], []
    for i, text in enumerate([source, source.replace("class Noisy", "# a comment\n\n\nclass Noisy"),
                              source.replace("rand_like(x)", "rand_like(x) * 2")]):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "cases.py").write_text(text)
        r = tc("export", "--cases", tmp_path / str(i) / "cases.py", "--out", tmp_path / str(i) / "c", "--case",
               "noisy")
        assert r.returncode == 0, r.stderr
        opened = _core.Corpus.open(str(tmp_path / str(i) / "c"))
        v = next(v for v in opened.cases[0].variants if v.kind == "exported_program")
        digests.append(v.sha256)
        keys.append(_core.program_key(opened, "noisy", v.name))
    assert digests[0] != digests[1], "the moved source lines should change the program file (its stack traces)"
    assert keys[0] == keys[1] and keys[2] != keys[0], keys


KV_CACHE = """
    import torch
    from torch import nn
    from torch.utils import _pytree as pytree
    import torchconform as tc

    class KVCache:  # the shape of transformers' DynamicCache: registered for torch.export, flattened to named lists
        def __init__(self, keys, values):
            self.keys, self.values = keys, values

    pytree.register_pytree_node(KVCache, lambda c: ([c.keys, c.values], ["key_cache", "value_cache"]),
                                lambda children, context: KVCache(*children), serialized_type_name="cases.KVCache")

    class LayoutCache(KVCache):  # transformers 5's DynamicCache: its context is [names, per-layer layout]
        pass

    pytree.register_pytree_node(LayoutCache,
                                lambda c: ([c.keys, c.values], [["key_cache", "value_cache"], [None, None]]),
                                lambda children, context: LayoutCache(*children),
                                serialized_type_name="cases.LayoutCache")

    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.k, self.v, self.head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 5)

        def forward(self, x):
            return {"logits": self.head(x), "cache": KVCache([self.k(x), self.k(x * 2)], [self.v(x)]),
                    "layers": LayoutCache([self.k(x * 3)], [self.v(x * 3)])}

    g = torch.Generator().manual_seed(0)
    tc.declare("tiny_lm", model=TinyLM, mode="export", inputs={"a": (torch.randn(2, 8, generator=g),)})
"""


def test_an_output_registered_as_a_pytree_node_is_stored_as_its_named_leaves(tmp_path: Path) -> None:
    """1: a causal LM's DynamicCache (any class registered with register_pytree_node) could not be stored. It is now
    the dict of its children, named from the node's serialized context, in the golden as in the runner's rebuild of
    the program's output; the manifest lists the type. The control: a golden cache value moved by 1e-3 FAILs, and the
    report names the leaf by its path through the cache."""
    import json

    import torch

    from conftest import rehash

    cases = write(tmp_path, KV_CACHE)
    corpus = tmp_path / "corpus"
    r = tc("export", "--cases", cases, "--out", corpus)
    assert r.returncode == 0, r.stderr
    m = json.loads((corpus / "tiny_lm" / "manifest.json").read_text())
    v = next(x for x in m["variants"] if x["name"] == "export")
    assert v["pytree_types"] == [{"name": "cases.KVCache", "kind": "node", "fields": []},
                                 {"name": "cases.LayoutCache", "kind": "node", "fields": []}], v
    expected = corpus / "tiny_lm" / m["input_sets"][0]["expected"]["file"]
    golden = torch.load(expected, weights_only=True)
    assert sorted(golden["cache"]) == ["key_cache", "value_cache"] and len(golden["cache"]["key_cache"]) == 2, golden
    assert sorted(golden["layers"]) == ["key_cache", "value_cache"], golden  # (names from [names, layout])
    cache = tmp_path / "cache"
    c = tc("compile", corpus, "--aoti-cache", cache)
    assert c.returncode == 0, c.stdout + c.stderr
    v = tc("verify", corpus, "--aoti-cache", cache)
    assert v.returncode == 0 and "PASS  tiny_lm:export@aoti/a" in v.stdout, v.stdout + v.stderr
    golden["cache"]["value_cache"][0] = golden["cache"]["value_cache"][0] + 1e-3
    torch.save(golden, expected)
    rehash(corpus, "tiny_lm")
    v = tc("verify", corpus, "--aoti-cache", cache)
    assert v.returncode == 1 and "FAIL  tiny_lm:export@aoti/a" in v.stdout, v.stdout
    assert "$['cache']['value_cache'][0]" in v.stdout, v.stdout
    golden["cache"]["value_cache"][0] = golden["cache"]["value_cache"][0] - 1e-3  # (back)
    golden["layers"]["key_cache"][0] = golden["layers"]["key_cache"][0] + 1e-3
    torch.save(golden, expected)
    rehash(corpus, "tiny_lm")
    v = tc("verify", corpus, "--aoti-cache", cache)
    assert v.returncode == 1 and "$['layers']['key_cache'][0]" in v.stdout, v.stdout


TRACED_AND_SCRIPTED = """
    import torch
    from torch import nn
    import torchconform as tc

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 4))

        def forward(self, x):
            return self.layers(x).softmax(-1)

    g = torch.Generator().manual_seed(0)
    tc.declare("traced", model=Block, mode="trace", optimizations=True, inputs={"a": (torch.randn(2, 8, generator=g),)})
    tc.declare("scripted", model=Block, mode="script", inputs={"a": (torch.randn(3, 8, generator=g),)})
"""


def test_torchscript_artifacts_are_the_same_bytes_from_any_directory_and_name_no_local_path(tmp_path: Path) -> None:
    """4: the same cases file exported from two directories gave different artifact.pt files: TorchScript's debug
    records held the absolute paths of the cases file, site-packages and the standard library (and a random
    serialization id). The exporter now writes them relative to labelled roots, moving the traced source ranges with
    them, so the bytes are the same from any checkout and no local path is disclosed."""
    import zipfile

    outs = []
    for where in (tmp_path / "a", tmp_path / "b" / "deeper" / "still"):
        cases = write(where, TRACED_AND_SCRIPTED)
        r = tc("export", "--cases", cases, "--out", where / "c", "--no-bound-sets")
        assert r.returncode == 0, r.stderr
        outs.append(where / "c")
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*.pt") if "sets" not in p.parts)
    assert len(files) == 5, files  # two artifacts, the traced one's frozen, passes and optimized variants
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f"{f} differs between the two checkouts"
        with zipfile.ZipFile(outs[1] / f) as z:
            for name in z.namelist():
                data = z.read(name)
                for local in (str(tmp_path), sys.prefix, str(Path(__file__).resolve().parents[2])):
                    assert local.encode() not in data, f"{f}: {name} discloses {local}"
    notes = [json.loads(m.read_text()) for m in outs[0].glob("*/manifest.json")]
    assert not any("debug record" in json.dumps(m) for m in notes)  # every record was rewritten


def test_a_rewritten_artifact_keeps_its_original_code_traceback(tmp_path: Path) -> None:
    """The source ranges of a traced module are offsets into its recorded frames: shortening a path moves every
    later range. A bad call's "original code" traceback must read as torch's own, with the portable paths. The
    control: the same rewrite without moving the ranges gives a different (wrong) traceback."""
    import torch

    from torchconform.writing import reproducible

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.Linear(8, 4))

        def forward(self, x):
            return self.layers(x)

    traced = torch.jit.trace(Block().eval(), torch.randn(2, 8))
    raw, portable = tmp_path / "raw.pt", tmp_path / "portable.pt"
    traced.save(str(raw))
    assert reproducible.save(traced, portable) == []

    def message(path: Path) -> str:
        with pytest.raises(RuntimeError) as e:
            torch.jit.load(str(path))(torch.randn(2, 5))
        return str(e.value)

    known = reproducible.roots()
    expected = reproducible.portable(message(raw).encode(), known)[0].decode()
    got = message(portable)
    assert "original code" in got and "<site-packages>/torch/nn/modules/linear.py" in got, got
    assert got == expected
    # control: rewrite the strings only (the ranges left where torch put them): the traceback no longer reads right
    original = reproducible.scrub_debug_record

    def strings_only(data: bytes, roots: list) -> bytes | None:
        root = reproducible.parse(data)
        for node in reproducible._memo(root).values():
            if node.kind == "str":
                node.value = reproducible.portable(node.value, roots)[0]
        return reproducible.emit(root)

    reproducible.scrub_debug_record = strings_only
    try:
        reproducible.save(traced, tmp_path / "unmoved.pt")
    finally:
        reproducible.scrub_debug_record = original
    assert message(tmp_path / "unmoved.pt") != expected
