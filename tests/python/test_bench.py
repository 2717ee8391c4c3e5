"""torchconform bench: the C++ timing primitives it stands on, the phase timings of a run, and the command's output.

Timings are never asserted against thresholds here (a loaded CI machine would make that a flaky test); what is
checked is that every number is measured over the right work: the floor makes as many calls as a verification, the
phase times land on the results that did the work, and the tables show the JSON's numbers.
"""

from __future__ import annotations

import json
import time

import pytest
import torch  # noqa: F401  (before _core)

from conftest import GOLDEN, counts, planned, tc
from torchconform import _core, verification
from torchconform.tools.bench import markdown, stats


@pytest.fixture(scope="module")
def corpus():
    return _core.Corpus.open(str(GOLDEN))


@pytest.mark.e2e
def test_each_set_is_read_and_decoded_once_per_case(corpus):
    results = _core.run_case(corpus, "simple_cnn", repeat=2)
    first = {}
    for r in results:
        first.setdefault(r.input_set, r)
    for r in results:
        if r.verdict == "PASS":
            assert r.calls == 2 and r.call_seconds >= r.first_call_seconds > 0
        if r is first[r.input_set]:
            assert r.decode_seconds > 0 and r.read_seconds > 0, r.id
        else:
            # Decoded data is shared; a later artifact only reads (and hashes) its own file, on its first set.
            assert r.decode_seconds == 0, r.id
    artifacts_first_set = {}
    for r in results:
        artifacts_first_set.setdefault(r.artifact, r.input_set)
    for r in results:
        if r.input_set != artifacts_first_set[r.artifact] and r is not first[r.input_set]:
            assert r.read_seconds == 0, r.id


@pytest.mark.e2e
def test_floor_makes_the_calls_a_verification_makes(corpus):
    code, results, _ = verification.run([GOLDEN, "--no-isolate", "--repeat", "2", "--quiet"])
    assert code == 0
    t0 = time.perf_counter()
    floor = _core.measure_floor(corpus, repeat=2)
    wall = time.perf_counter() - t0
    # Every result whose artifact loads is called twice (the plan's runs that are not expected failures: those
    # never load); the floor calls the same artifacts on the same sets.
    n_pass, _ = counts()
    assert floor["calls"] == sum(r.calls for r in results) == 2 * n_pass
    loaded = {(r.case, r.artifact) for r in results if r.runtime != "export"}
    assert floor["artifacts"] == len(loaded)
    # Both phases did work, and the time the floor claims fits in the time the call took.
    assert floor["load_seconds"] > 0 and floor["call_seconds"] > 0 and floor["seconds"] <= wall
    assert _core.measure_floor(corpus, repeat=1)["calls"] == n_pass


@pytest.mark.e2e
def test_bench_artifact_times_the_requested_artifact(corpus):
    x = torch.randn(2, 3, 32, 32)
    load, first, samples = _core.bench_artifact(corpus, "simple_cnn", "", "forward", (x,), min_calls=4,
                                                min_seconds=0, warmup_seconds=0)
    assert load > 0 and first > 0 and len(samples) >= 4 and all(s > 0 for s in samples)
    _, _, samples = _core.bench_artifact(corpus, "simple_cnn", "export@aoti", "forward", (x,), min_calls=2,
                                         min_seconds=0, warmup_seconds=0)
    assert len(samples) >= 2
    with pytest.raises(_core.CorpusError, match=r"no artifact 'nope'.*frozen.*export@aoti"):
        _core.bench_artifact(corpus, "simple_cnn", "nope", "forward", (x,))
    with pytest.raises(_core.CorpusError, match="failed at export"):
        _core.bench_artifact(corpus, "dynamic_router", "export@aoti", "forward", (torch.randn(1, 256),))
    with pytest.raises(_core.CorpusError, match="torch::jit::load failed"):  # the expected failure of `optimized`
        _core.bench_artifact(corpus, "simple_cnn", "optimized", "forward", (x,))


@pytest.mark.e2e
def test_call_overhead_compares_like_with_like(corpus):
    r = _core.measure_call_overhead(corpus, "process_outputs", "top5_labels", calls=20, rounds=3, threads=1)
    assert r["raw_seconds"] > 0 and r["runner_seconds"] > 0 and r["calls"] == 20 and r["rounds"] == 3
    with pytest.raises(_core.UsageError, match="prelude"):
        _core.measure_call_overhead(corpus, "full_model", "sample_b2_s12_t025", calls=2, rounds=1)
    with pytest.raises(_core.CorpusError, match="no input set named 'nope'"):
        _core.measure_call_overhead(corpus, "simple_cnn", "nope", calls=2, rounds=1)


def test_stats():
    s = stats([0.004, 0.001, 0.002, 0.003])
    assert s["median_ms"] == pytest.approx(2.5) and s["min_ms"] == pytest.approx(1.0) and s["n"] == 4
    assert s["p25_ms"] == pytest.approx(1.75) and s["p75_ms"] == pytest.approx(3.25)
    assert s["spread"] == pytest.approx(1.5 / 2.5)


@pytest.mark.parametrize("speedup,verdict", [(1.05, "below"), (1.10, "inside"), (1.2, "inside"), (1.31, "above")])
def test_spec_claim_verdict_follows_the_measurement(speedup, verdict):
    result = {"command": "c", "settings": "s", "models": [],
              "machine": {"cpu": "x", "cores": 2, "memory_gib": 1, "os": "o", "python": "3", "torch": "t",
                          "libtorch": "l", "mkldnn": True, "cuda": False},
              "spec_recipe": {"python_ms": 100 * speedup, "ts_ms": 100, "speedup": speedup, "iters": 100,
                              "threads": 2}}
    assert f"**{verdict}** the claimed 1.10-1.30x" in markdown(result)


def _bench(tmp_path, *args):
    return tc("bench", GOLDEN, "--out", tmp_path, "--quick", "--skip-compile", "--quiet", *args, timeout=900)


@pytest.mark.e2e
def test_bench_models_writes_tables_json_and_plot(tmp_path):
    done = _bench(tmp_path, "--model", "process_outputs", "--threads", "1", "--skip-suite", "--skip-spec")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = result["models"]
    assert [(r["input"], r["threads"]) for r in rows] == [("1x10", 1), ("256x10", 1)]
    for r in rows:
        assert set(r["modes"]) == {"eager", "ts_python", "ts_cpp", "aoti_cpp"}
        assert set(r["speedup"]) == {"ts_python", "ts_cpp", "aoti_cpp"}
        # The table shows the JSON's numbers (one place computes them; the faces must agree).
        shown = [f"{r['speedup'][k]:.2f}x" for k in ("ts_python", "ts_cpp", "aoti_cpp")]
        row_line = next(ln for ln in (tmp_path / "bench.md").read_text().splitlines()
                        if ln.startswith(f"| process_outputs | {r['input']} | 1 |"))
        assert all(x in row_line for x in shown), (shown, row_line)
        assert r["modes"]["ts_cpp"]["load_s"] > 0 and r["modes"]["eager"]["load_s"] is None
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "bench.md").read_text()
    assert "| process_outputs | 256x10 | 1 |" in md and md in done.stdout
    assert result["machine"]["libtorch"] == _core.libtorch_version()


@pytest.mark.e2e
@pytest.mark.heavy
def test_bench_suite_reports_ratios_of_its_measurements(tmp_path):
    done = _bench(tmp_path, "--skip-models", "--rounds", "1", "--overhead-calls", "10")
    assert done.returncode == 0, done.stderr
    s = json.loads((tmp_path / "bench.json").read_text())["suite"]
    # The table shows the JSON's ratios (computed once, in bench.py; the faces must agree).
    md = (tmp_path / "bench.md").read_text()
    assert f"| {s['ratio_in_process']:.2f} |" in md and f"**{s['ratio_cli_vs_python_loop']:.2f}**" in md
    n_pass, _ = counts()
    assert s["floor"]["calls"] == 2 * n_pass
    # The Python loop cannot load the `optimized` variant either (the corpus's expected failure) and, unlike the
    # runner, does not know AOTInductor returns process_outputs' ints as tensors.
    loop = s["python_loop"]
    # It counts calls (two per set) and stops a set at its first failure: a failed set costs two passes. It fails
    # every set process_outputs' program runs (the written ones and those generated at its bounds).
    int_sets = [r for r in planned() if r["case"] == "process_outputs" and r["artifact"] == "export@aoti"]
    assert len(int_sets) >= 2
    assert loop["unloadable"] == 1 and loop["failed"] == len(int_sets), loop
    assert loop["passed"] == 2 * n_pass - 2 * loop["failed"], loop
    assert [o["case"] for o in s["call_overhead"]] == ["simple_cnn", "dynamic_router"]
    # The phases are measured inside the verification (loads once per artifact, not per set): each did work, and
    # together they fit in its wall time. ("other" is the remainder by construction, so it is not checked.)
    parts = {k: v for k, v in s["breakdown_s"].items() if k not in ("other", "open_corpus")}
    assert set(parts) == {"calls", "loads", "read_and_hash", "decode", "setup", "compare"}
    assert all(v > 0 for v in parts.values()), parts
    assert sum(parts.values()) <= s["verify_in_process_s"]


@pytest.mark.e2e
def test_bench_refuses_unknown_models_and_bad_threads(tmp_path):
    done = _bench(tmp_path, "--model", "resnet")
    assert done.returncode == 2 and "--model resnet: no such model" in done.stderr
    done = _bench(tmp_path, "--threads", "two")
    assert done.returncode == 2 and "--threads takes comma-separated integers" in done.stderr


def test_bench_times_executorch_where_the_corpus_and_runner_have_it():
    """ExecuTorch's columns come from the corpus's lowerings of the model's program; each one left out says why (not
    exported with --executorch, not lowerable, no runtime in this runner), never an empty column without a reason."""
    from torchconform.tools.bench import Model, executorch_labels

    m = Model("c", "C", [], aoti="export@aoti")
    notes: list[str] = []
    assert executorch_labels(m, {"variants": []}, notes) == {} and len(notes) == 2
    assert all("not in this corpus (torchconform export --executorch)" in n for n in notes)
    variants = [{"name": "export_et", "file": "variants/export_et.pte"},
                {"name": "export_et_xnnpack", "error": "PendingUnbackedSymbolNotFound: ..."}]
    notes = []
    labels = executorch_labels(m, {"variants": variants}, notes)
    assert any("c is not lowered (PendingUnbackedSymbolNotFound" in n for n in notes)
    available = {n: ok for n, ok, _ in _core.runtimes()}["executorch"]
    if available:  # ci/executorch.sh's runner
        assert labels == {"et_cpp": "export_et@executorch"}
    else:
        assert labels == {} and any("ExecuTorch CPU kernels (C++): not run: this runner was built without" in n
                                    for n in notes)
    assert executorch_labels(Model("d", "D", []), {"variants": variants}, notes) == {}  # no program: no columns
