"""Sharded and parallel verification (issue 18): the partition that --shard K/N makes is exact (every case in exactly
one shard, for N = 1..7, by hash and by recorded cost), the CLI's shards together give the full run's results, and
the pytest plugin gives the same outcome sharded and under pytest-xdist."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOLDEN, TC, counts, result_id, result_ids
from torchconform import _core

N_PASS, N_XFAIL = counts()
NAMES = [f"case_{i:03d}" for i in range(57)] + ["simple_cnn", "dynamic_router", "full_model", "process_outputs"]


@pytest.mark.parametrize("n", range(1, 8))
@pytest.mark.parametrize("costs", [{}, {name: random.Random(7).uniform(0.1, 30) * (i % 5 + 1)
                                        for i, name in enumerate(NAMES[:-3])}], ids=["hash", "costs"])
def test_the_shards_partition_the_cases_exactly(n: int, costs: dict[str, float]) -> None:
    shards = [_core.shard_names(NAMES, k, n, costs) for k in range(1, n + 1)]
    together = [x for s in shards for x in s]
    assert sorted(together) == sorted(NAMES)  # the union is everything ...
    assert len(together) == len(set(together))  # ... with no overlap
    for s in shards:
        assert s == [x for x in NAMES if x in s]  # the corpus's order is kept
    assert shards == [_core.shard_names(NAMES, k, n, costs) for k in range(1, n + 1)]  # deterministic
    # A shard's membership does not depend on the order the names come in.
    assert [sorted(s) for s in shards] == [sorted(_core.shard_names(NAMES[::-1], k, n, costs))
                                           for k in range(1, n + 1)]
    if costs and n > 1:  # longest-first greedy: no shard exceeds another by more than the largest single cost
        median = sorted(costs.values())[len(costs) // 2]
        load = [sum(costs.get(x, median) for x in s) for s in shards]
        assert max(load) - min(load) <= max(costs.values())


def test_a_shard_outside_the_range_is_refused() -> None:
    for k, n in ((0, 3), (4, 3), (1, 0)):
        with pytest.raises(ValueError, match="1 <= K <= N"):
            _core.shard_names(NAMES, k, n)


def ids(report: Path) -> list[str]:
    return [f"{r['case']}:{r['artifact']}/{r['input_set']}@{r['device']}"
            for r in json.loads(report.read_text())["results"]]


@pytest.mark.e2e
def test_the_cli_shards_together_are_the_full_run(runner: Path, golden_run, tmp_path: Path) -> None:
    full = ids(golden_run.json)
    for n, extra in ((2, []), (3, ["--durations", str(golden_run.json)])):
        got: list[str] = []
        for k in range(1, n + 1):
            out = tmp_path / f"{k}of{n}.json"
            r = subprocess.run([str(runner), str(GOLDEN), "--shard", f"{k}/{n}", "--json", str(out), *extra],
                               capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, r.stdout + r.stderr
            assert re.search(rf"^shard {k}/{n}: \d+ of 5 cases \(", r.stdout, re.M), r.stdout
            got += ids(out)
        assert sorted(got) == sorted(full) and len(got) == len(set(got))
    r = subprocess.run([str(runner), str(GOLDEN), "--shard", "3/2"], capture_output=True, text=True)
    assert r.returncode == 2 and "K <= N" in r.stderr
    r = subprocess.run([str(runner), str(GOLDEN), "--durations", str(golden_run.json)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "without --shard" in r.stderr


def plugin(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", f"--torchconform-corpus={GOLDEN}", "-q",
                           "-p", "no:cacheprovider", "-o", "addopts=", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)


def outcome(r: subprocess.CompletedProcess[str]) -> tuple[int, int]:
    m = re.search(r"(\d+) passed(?:, (\d+) xfailed)?", r.stdout)
    assert m, r.stdout + r.stderr
    return int(m.group(1)), int(m.group(2) or 0)


@pytest.mark.e2e
@pytest.mark.heavy
def test_the_plugin_sharded_and_under_xdist_gives_the_same_outcome(tmp_path: Path) -> None:
    r = plugin(tmp_path, "-n", "2", "--dist", "loadgroup")
    assert r.returncode == 0, r.stdout + r.stderr
    assert outcome(r) == (N_PASS, N_XFAIL)
    shards = [plugin(tmp_path, "--torchconform-shard", f"{k}/2") for k in (1, 2)]
    for s in shards:
        assert s.returncode in (0, 5), s.stdout + s.stderr  # 5: a shard that holds no case collects nothing
    got = [outcome(s) if s.returncode == 0 else (0, 0) for s in shards]
    assert (sum(p for p, _ in got), sum(x for _, x in got)) == (N_PASS, N_XFAIL)
    r = plugin(tmp_path, "--torchconform-shard", "0/2")
    assert r.returncode == 4 and "1 <= K <= N" in r.stderr


def comparable(text: str) -> list[str]:
    """A run's stdout without what only timing changes: '(12.3 ms)', the elapsed seconds, the corpus path's temp."""
    out = []
    for line in text.splitlines():
        line = re.sub(r" \([0-9.e+-]+ m?s\)$", "", line)
        line = re.sub(r"elements compared, [0-9.e+-]+ s\)", "elements compared)", line)
        out.append(line)
    return out


TIMING = {"seconds", "load_seconds", "first_call_seconds", "steady_seconds", "read_seconds", "decode_seconds",
          "call_seconds", "compare_seconds", "setup_seconds", "line"}


@pytest.mark.e2e
def test_jobs_2_reports_exactly_what_a_sequential_run_does(runner: Path, golden_run, tmp_path: Path) -> None:
    r = subprocess.run([str(runner), str(GOLDEN), "--jobs", "2", "--json", str(tmp_path / "j.json")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == golden_run.done.returncode == 0, r.stdout + r.stderr
    assert comparable(r.stdout) == comparable(golden_run.done.stdout)  # the same lines, in the same order
    seq = json.loads(golden_run.json.read_text())["results"]
    par = json.loads((tmp_path / "j.json").read_text())["results"]
    assert [{k: v for k, v in x.items() if k not in TIMING} for x in par] == \
           [{k: v for k, v in x.items() if k not in TIMING} for x in seq]
    assert len(par) == N_PASS + N_XFAIL
    r = subprocess.run([str(runner), str(GOLDEN), "--jobs", "2", "--no-isolate"], capture_output=True, text=True)
    assert r.returncode == 2 and "one or the other" in r.stderr


@pytest.mark.e2e
@pytest.mark.heavy
def test_compile_jobs_2_fills_the_cache_atomically(runner: Path, tmp_path: Path) -> None:
    from torchconform.authoring.registry import select
    from torchconform.writing.aoti_build import cached_package_problem
    from torchconform.writing.writer import write_corpus

    corpus = tmp_path / "corpus"
    write_corpus(corpus, select(["process_outputs", "dynamic_router_masked"]), log=lambda m: None)
    cache = tmp_path / "cache"
    tc = [*TC, "compile", str(corpus), "--aoti-cache", str(cache)]
    r = subprocess.run([*tc, "--jobs", "2"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 AOTInductor packages: 2 compiled" in r.stdout and "2 at a time" in r.stderr
    keys = [json.loads(k.read_text()) for k in cache.glob("*/key.json")]
    assert len(keys) == 2 and not list(cache.glob("*partial*"))
    for k, package in ((k, next(cache.glob(f"{k['program_key'][:32]}-*/model.pt2"))) for k in keys):
        assert cached_package_problem(package, k["program_key"]) == ""
    r = subprocess.run([str(runner), str(corpus), "--aoti-cache", str(cache)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and "@aoti/" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([*tc, "--jobs", "2"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "0 compiled (0.0 s), 2 from the cache" in r.stdout
    r = subprocess.run([*tc, "--jobs", "0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--jobs expects an integer >= 1" in r.stderr


@pytest.mark.e2e
def test_list_prints_exactly_the_results_a_run_produces(runner: Path, golden_run) -> None:
    r = subprocess.run([str(runner), str(GOLDEN), "--list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [line.split(" ") for line in r.stdout.splitlines()]
    assert [x[0] for x in lines] == result_ids(golden_run.json)  # same ids, same order, nothing run
    verdicts = [x["verdict"] for x in json.loads(golden_run.json.read_text())["results"]]
    assert [x[1:] == ["xfail"] for x in lines] == [v == "XFAIL" for v in verdicts]  # marked where the run XFAILs
    assert "XFAIL" in verdicts and "summary" not in r.stdout and "PASS" not in r.stdout
    r = subprocess.run([str(runner), str(GOLDEN), "--list", "--result", "simple_cnn:*/b4_32x32"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and [x.split(" ")[0] for x in r.stdout.splitlines()] == [
        i for i in result_ids(golden_run.json) if i.startswith("simple_cnn:") and i.endswith("/b4_32x32")]
    r = subprocess.run([str(runner), str(GOLDEN), "--list", "--device", "all"], capture_output=True, text=True)
    assert r.returncode == 2 and "one device type" in r.stderr


@pytest.mark.e2e
def test_an_expected_failure_selected_alone_exits_3(runner: Path, golden_run) -> None:
    xfail = next(i for i, x in zip(result_ids(golden_run.json), json.loads(golden_run.json.read_text())["results"])
                 if x["verdict"] == "XFAIL")
    r = subprocess.run([str(runner), str(GOLDEN), "--result", xfail, "--no-isolate"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 3 and "NOTHING WAS VERIFIED" in r.stdout, r.stdout + r.stderr
    # Beside a result that verifies something, the same expected failure is part of a passing run.
    r = subprocess.run([str(runner), str(GOLDEN), "--result", xfail, "--result", "process_outputs/*", "--no-isolate"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.e2e
def test_result_runs_only_the_selected_results_as_the_full_run_does(runner: Path, golden_run, tmp_path: Path) -> None:
    full = {i: x for i, x in zip(result_ids(golden_run.json), json.loads(golden_run.json.read_text())["results"])}
    variant = next(i for i in full if i.startswith("simple_cnn:") and full[i].get("vs_artifact"))
    picked = [variant, "dynamic_router/batch1"]
    for isolate in ([], ["--no-isolate"]):
        out = tmp_path / f"sel{len(isolate)}.json"
        r = subprocess.run([str(runner), str(GOLDEN), "--json", str(out), *isolate,
                            *[a for p in picked for a in ("--result", p)]], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert result_ids(out) == [i for i in full if i in picked]  # nothing else, no CRASH for the unselected
        for x in json.loads(out.read_text())["results"]:
            i = result_id(x)
            # The variant still compared with the TorchScript artifact call by call (its reference ran, unreported).
            assert {k: v for k, v in x.items() if k not in TIMING} == \
                   {k: v for k, v in full[i].items() if k not in TIMING}
    r = subprocess.run([str(runner), str(GOLDEN), "--result", "simple_cnn/no_such_set"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "matches no result" in r.stderr and "--list" in r.stderr


@pytest.mark.e2e
def test_result_fails_the_perturbed_result_and_passes_its_neighbour(runner: Path, tmp_path: Path) -> None:
    from conftest import perturbed_corpus

    corpus = perturbed_corpus(tmp_path)
    bad = subprocess.run([str(runner), str(corpus), "--result", "simple_cnn/b4_32x32"], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 1 and "FAIL  simple_cnn/b4_32x32" in bad.stdout, bad.stdout
    good = subprocess.run([str(runner), str(corpus), "--result", "simple_cnn/trace_example"], capture_output=True,
                          text=True, timeout=300)
    assert good.returncode == 0 and "PASS  simple_cnn/trace_example" in good.stdout, good.stdout
