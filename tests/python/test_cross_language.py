"""Cross-language checks, one test per case x input set x available device:
(a) the artifact reloaded in Python with torch.jit.load, (b) the same artifact run by the C++ runner through the
bindings. (a) and (b) must be bitwise identical (same LibTorch, same thread count); (c) both agree with the eager
golden within the case's tolerance. All comparisons use the C++ comparator through torchconform._core."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import GOLDEN, copy_corpus, rehash
from torchconform import _core
from torchconform.authoring.case import Call, InputSet
from torchconform.writing.writer import apply_prelude, call

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CORPUS = _core.Corpus.open(str(GOLDEN))
PARAMS = [(c.name, s.name, d) for c in CORPUS.cases for s in c.input_sets for d in DEVICES]
EXACT = {"default": {"mode": "exact"}, "outputs": {}}


def manifest(case: str) -> dict:
    return json.loads((GOLDEN / case / "manifest.json").read_text())


def python_reload(case: str, set_name: str, device: str) -> tuple[object, object, dict]:
    """Python's side: torch.jit.load, the same steps as the C++ runner (prelude on a fresh load, seed, two calls)."""
    m = manifest(case)
    s = next(x for x in m["input_sets"] if x["name"] == set_name)
    args = torch.load(GOLDEN / case / s["inputs"]["file"], weights_only=True)
    args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)
    spec = InputSet(set_name, args, s["description"], seed=s["seed"],
                    prelude=tuple(Call(c["method"], tuple(c["args"])) for c in s["prelude"]))
    module = torch.jit.load(str(GOLDEN / case / "artifact.pt"), map_location=device)
    module.eval()
    with torch.inference_mode():
        apply_prelude(module, spec)
        first, second = call(module, spec), call(module, spec)
    expected = torch.load(GOLDEN / case / s["expected"]["file"], weights_only=True)
    return first, second, {"expected": expected, "tolerance": m["tolerance"]}


def to_cpu(v: object) -> object:
    if isinstance(v, torch.Tensor):
        return v.cpu()
    if isinstance(v, tuple):
        return tuple(to_cpu(x) for x in v)
    if isinstance(v, list):
        return [to_cpu(x) for x in v]
    return v


@pytest.mark.parametrize(("case", "set_name", "device"), PARAMS, ids=[f"{c}[{s}-{d}]" for c, s, d in PARAMS])
def test_python_and_cpp_agree_bitwise_and_with_golden(case: str, set_name: str, device: str) -> None:
    threads = torch.get_num_threads()  # both sides run in this process, on the same LibTorch, same thread count
    cpp = next(r for r in _core.run_case(CORPUS, case, device=device, threads=threads, sets=[set_name])
               if r.artifact == "")
    first, second, ref = python_reload(case, set_name, device)
    # (a) == (b), bit for bit, on both of Python's calls.
    for n, py_out in enumerate((first, second), 1):
        same = _core.compare(to_cpu(py_out), cpp.output, EXACT)
        assert same.ok, f"Python call {n} vs C++: {same.summary()}"
    # (c) both within tolerance of the eager golden, unless the corpus marks the set as failing on this device (the
    # seeded sampling sets on CUDA: another generator), where the runner must say XFAIL.
    if _core.applicable_mark(CORPUS, case, "", set_name, _core.libtorch_version(), device):
        assert cpp.verdict == "XFAIL", cpp.line
        return
    assert cpp.verdict == "PASS", cpp.line
    vs_golden = _core.compare(ref["expected"], to_cpu(second), ref["tolerance"])
    assert vs_golden.ok, vs_golden.summary()


def test_exact_mode_through_the_bindings_sees_one_ulp() -> None:
    x = torch.tensor([1.0, 2.0])
    y = torch.nextafter(x, torch.tensor([2.0, 3.0]))
    assert not _core.compare(x, y, EXACT).ok
    assert _core.compare(x, y).ok  # but within assert_close's float32 tolerance


def test_perturbed_golden_fails_the_same_through_bindings_and_cli(run_cli, tmp_path) -> None:
    corpus = copy_corpus(tmp_path)
    path = corpus / "full_model" / "sets" / "greedy_b3_s10.expected.pt"
    tokens = torch.load(path, weights_only=True)
    tokens[2, 4] = (tokens[2, 4] + 1) % 50
    torch.save(tokens, path)
    rehash(corpus, "full_model")
    bound = _core.run_case(_core.Corpus.open(str(corpus)), "full_model", sets=["greedy_b3_s10"])[0]
    r = run_cli(corpus, "--case", "full_model", "--json", tmp_path / "r.json")
    assert r.returncode == 1
    row = next(x for x in json.loads((tmp_path / "r.json").read_text())["results"]
               if x["input_set"] == "greedy_b3_s10")
    assert bound.verdict == row["verdict"] == "FAIL"
    assert bound.comparison.first_failure.worst_index == row["leaves"][0]["worst_index"] == "[2, 4]"
    assert bound.comparison.first_failure.worst_actual == row["leaves"][0]["worst_actual"]
    strip = lambda line: line.rsplit(" (", 1)[0]  # noqa: E731  (drop the timing)
    assert strip(bound.line) == strip(row["line"])


def test_tensors_cross_without_copies() -> None:
    r = _core.run_case(CORPUS, "simple_cnn", sets=["b4_32x32"])[0]
    out = r.output
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (4, 10)
    assert r.output.data_ptr() == out.data_ptr()  # the C++ tensor itself, not a copy per access
    base = torch.randn(8, 6)
    view = base.t()[::2]  # non-contiguous, strided
    assert not view.is_contiguous()
    assert _core.compare(view.contiguous(), view).ok
    assert not _core.compare(view.contiguous() + 1, view).ok


PROGRAMS = [(c.name, v.name, s) for c in CORPUS.cases for v in c.variants
            if v.kind == "exported_program" and v.file and "aoti" in v.runtimes for s in v.input_sets]


@pytest.mark.parametrize(("case", "variant", "set_name"), PROGRAMS,
                         ids=[f"{c}:{v}@aoti[{s}]" for c, v, s in PROGRAMS])
def test_aoti_package_gives_the_same_bits_in_python_and_cpp(case: str, variant: str, set_name: str) -> None:
    """The AOTInductor package the C++ runner loads, loaded again by Python's torch._inductor.aoti_load_package
    and fed the same tensors: the flat outputs must be bitwise identical."""
    from torchconform.writing.values import leaves

    package = _core.aoti_package_path(_core.default_aoti_cache(), _core.program_key(CORPUS, case, variant), "cpu")
    assert Path(package).is_file(), f"no package at {package}: run `torchconform compile golden` (ci/test.sh does)"
    results = _core.run_case(CORPUS, case, threads=torch.get_num_threads(), sets=[set_name])
    cpp = next(r for r in results if r.artifact == f"{variant}@aoti")
    assert cpp.verdict == "PASS", cpp.line
    m = manifest(case)
    s = next(x for x in m["input_sets"] if x["name"] == set_name)
    args = torch.load(GOLDEN / case / s["inputs"]["file"], weights_only=True)
    flat = torch._inductor.aoti_load_package(package).loader.run([a for a in args if isinstance(a, torch.Tensor)])
    ours = leaves(cpp.output)
    assert len(flat) == len(ours)
    for py_leaf, cpp_leaf in zip(flat, ours):
        if isinstance(cpp_leaf, int):  # declared int_outputs_as_tensors: a 0-dim int64 tensor in Python
            assert py_leaf.dim() == 0 and int(py_leaf) == cpp_leaf
        else:
            same = _core.compare(py_leaf, cpp_leaf, EXACT)
            assert same.ok, same.summary()


def test_dtype_names_and_default_tolerances_mean_the_same_in_both_languages() -> None:
    """The dtypes a corpus holds have one name in Python (dtypes.py, which the exporter uses where the core is absent),
    in the core (dtype_name, default_rtol_atol in compare.cpp) and in the corpus schema; and "allclose" without its own
    rtol/atol means torch.testing.assert_close's defaults on both sides."""
    from torchconform.dtypes import DEFAULT_RTOL_ATOL, DTYPE_NAMES, dtype_name

    schema = json.loads(_core.corpus_schema())
    enums = [d["enum"] for d in _walk(schema) if isinstance(d, dict) and "float16" in d.get("enum", [])]
    assert enums and all(set(e) == set(DTYPE_NAMES.values()) for e in enums), enums
    for dtype, name in DTYPE_NAMES.items():
        leaf = _core.compare(torch.zeros(3, dtype=dtype), torch.zeros(3, dtype=dtype)).leaves[0]
        assert leaf.dtype == name == dtype_name(dtype)
        applied = leaf.applied_tolerance
        if dtype in DEFAULT_RTOL_ATOL:
            assert applied["mode"] == "allclose" and (applied["rtol"], applied["atol"]) == DEFAULT_RTOL_ATOL[dtype]
        else:
            assert applied["mode"] == "exact", (dtype, applied)
    assert set(DEFAULT_RTOL_ATOL) == {d for d in DTYPE_NAMES if d.is_floating_point or d.is_complex}
    # The control: a dtype the corpus cannot hold has no corpus name (torch's spelling, which no table matches).
    assert dtype_name(torch.float8_e4m3fn) not in DTYPE_NAMES.values()


def _walk(node):
    yield node
    for child in (node.values() if isinstance(node, dict) else node if isinstance(node, list) else []):
        yield from _walk(child)
