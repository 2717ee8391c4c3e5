"""pytest plugin (entry point ``torchconform``): ``pytest --torchconform-corpus DIR`` verifies a corpus with the C++
runner and reports one test per result of the run: case x artifact x input set x device, named like
``simple_cnn[b4_32x32-cpu]`` (the TorchScript artifact) or ``simple_cnn:frozen[b4_32x32-cpu]`` (a variant;
``simple_cnn:export@aoti[...]`` for an exported program run with AOTInductor). Expected failures are reported as
xfailed, and an unexpected pass fails.

Isolation is the CLI's: the corpus is verified by ``torchconform verify`` in a child process (which runs each case in
a process of its own), so a segfault inside LibTorch is a CRASH item, an endless loop a TIMEOUT item after
``--torchconform-timeout`` seconds, and the pytest session goes on. (The pytest process itself never runs an
artifact: LibTorch's OpenMP pools do not survive a fork once they have run, so it could not fork safely either.)
A corpus whose run verified nothing (no result compared an output with its golden) fails the session.

Scale: ``--torchconform-shard K/N`` keeps the cases of shard K of N exactly as ``torchconform-run --shard K/N`` picks
them (``--torchconform-durations REPORT`` balances by recorded seconds), for a CI matrix. Under pytest-xdist
(``-n auto --dist loadgroup``) every item carries ``xdist_group(<case>)``, so all items of a case run on one worker,
and a worker verifies only the cases of its own items (one child process per case) instead of the whole corpus.

Inert unless the option is given."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ..text import terminal


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchconform", "torchconform corpus verification")
    group.addoption("--torchconform-corpus", action="append", default=[], metavar="DIR",
                    help="verify this torchconform corpus: one test per case x input set x device (repeatable)")
    group.addoption("--torchconform-device", default="cpu", choices=("cpu", "cuda", "all"),
                    help="device(s) for --torchconform-corpus (default: cpu; cuda tests skip without CUDA)")
    group.addoption("--torchconform-aoti-cache", default="", metavar="DIR",
                    help="AOTInductor packages from `torchconform compile` (default: the runner's default cache)")
    group.addoption("--torchconform-timeout", type=float, default=600.0, metavar="SECONDS",
                    help="per-case time limit before a case's results are TIMEOUT (default: 600)")
    group.addoption("--torchconform-case", action="append", default=[], metavar="GLOB",
                    help="only cases matching GLOB (repeatable; an unmatched GLOB is an error)")
    group.addoption("--torchconform-threads", type=int, default=None, metavar="N",
                    help="intra-op threads for the runner (default: the number the goldens were made with, "
                         "the corpus's exported_with.threads)")
    group.addoption("--torchconform-shard", default="", metavar="K/N",
                    help="only the cases of shard K of N, as torchconform-run --shard K/N picks them")
    group.addoption("--torchconform-durations", default="", metavar="REPORT",
                    help="balance --torchconform-shard by the per-case seconds of this JSON report")
    group.addoption("--torchconform-load-library", action="append", default=[], metavar="PATH",
                    help="operator library for the runner to load first (repeatable), e.g. torchvision's")


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers it when installed; registered here too, so --strict-markers accepts the corpus items'
    # marker without xdist.
    config.addinivalue_line("markers", "xdist_group(name): run every item of this group on one xdist worker")


class CorpusFailure(Exception):
    pass


# (corpus root, device, case or "*") -> result rows of the run's JSON report, by (case, artifact, input set); each
# corpus is verified once per device in a child process (under xdist: once per case, on the worker that has it).
_RUNS: dict[tuple[str, str, str], dict[tuple[str, str, str], dict[str, Any]]] = {}
_TALLY: dict[str, dict[str, int]] = {}  # corpus root -> {"ran": items run, "verified": items that compared}


def _verify(corpus: str, device: str, aoti_cache: str, timeout: float, cases: list[str],
            threads: int | None, libraries: list[str]) -> dict[tuple[str, str, str], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="torchconform-pytest-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "torchconform", "verify", corpus, "--device", device, "--json", str(report),
               "--timeout", repr(timeout), "--quiet"] + (["--aoti-cache", aoti_cache] if aoti_cache else [])
        cmd += [a for name in cases for a in ("--case", name)] + (["--threads", str(threads)] if threads else [])
        cmd += [a for path in libraries for a in ("--load-library", path)]
        n_cases = len(cases)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=n_cases * timeout + 300)
        except subprocess.TimeoutExpired as e:
            raise CorpusFailure(f"verifying {corpus} on {device} took longer than {e.timeout:.0f} s") from None
        if not report.exists():
            lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
            raise CorpusFailure(f"verifying {corpus} on {device} produced no report (exit {done.returncode}): "
                                f"{lines[-1] if lines else 'no message'}")
        rows = json.loads(report.read_text())["results"]
    return {(r["case"], r["artifact"], r["input_set"]): r for r in rows}


class CorpusItem(pytest.Item):
    def __init__(self, *, corpus: Any, case: str, artifact: str, input_set: str, device: str, aoti_cache: str,
                 timeout: float, cases: list[str], threads: int | None, libraries: list[str], per_case: bool,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.per_case = per_case  # an xdist worker: verify this item's case alone
        self.corpus, self.case, self.artifact, self.input_set = corpus, case, artifact, input_set
        self.device, self.aoti_cache, self.timeout = device, aoti_cache, timeout
        self.cases, self.threads = cases, threads  # the selected cases (the child verifies those only)
        self.libraries = libraries

    def runtest(self) -> None:
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            pytest.skip("CUDA is not available to this LibTorch")
        key = (self.corpus.root, self.device, self.case if self.per_case else "*")
        tally = _TALLY.setdefault(self.corpus.root, {"ran": 0, "verified": 0})
        tally["ran"] += 1  # (after the skip: a device that is absent is not a run that verified nothing)
        if key not in _RUNS:
            _RUNS[key] = _verify(self.corpus.root, self.device, self.aoti_cache, self.timeout,
                                 [self.case] if self.per_case else self.cases, self.threads, self.libraries)
        result = _RUNS[key].get((self.case, self.artifact, self.input_set))
        if result is None:
            raise CorpusFailure(f"{self.name}: the runner produced no result for it")
        if result["verdict"] in ("PASS", "FAIL", "XPASS"):
            tally["verified"] += 1
        if result["verdict"] == "XFAIL":
            pytest.xfail(result["line"])
        if result["verdict"] != "PASS":
            first = (result.get("localization") or {}).get("first_divergence")
            raise CorpusFailure(result["line"] + (f"\nfirst diverging submodule: {first}" if first else ""))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CorpusFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return Path(self.corpus.root), None, self.name


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    dirs = config.getoption("torchconform_corpus")
    if not dirs:
        return
    import torch  # noqa: F401  (before _core)

    from .. import _core

    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu", "cuda"]}[config.getoption("torchconform_device")]
    threads = config.getoption("torchconform_threads")
    if threads is not None and threads < 1:
        raise pytest.UsageError(f"--torchconform-threads expects an integer >= 1, got {threads}")
    shard = config.getoption("torchconform_shard")
    durations = config.getoption("torchconform_durations")
    if durations and not shard:
        raise pytest.UsageError("--torchconform-durations balances --torchconform-shard; give both")
    if shard:
        k, _, n = shard.partition("/")
        if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
            raise pytest.UsageError(f"--torchconform-shard expects K/N with 1 <= K <= N, got {shard!r}")
    try:
        costs = _core.case_costs_from_report(durations) if durations else {}
    except ValueError as e:
        raise pytest.UsageError(str(e)) from e
    per_case = hasattr(config, "workerinput")  # an xdist worker
    for d in dirs:
        try:
            corpus = _core.Corpus.open(d)
            chosen = corpus.select(config.getoption("torchconform_case"))
        except _core.CorpusError as e:
            raise pytest.UsageError(f"--torchconform-corpus {d}: {e}") from e
        if shard:
            everything = len(chosen)
            chosen = _core.shard_names(chosen, int(k), int(n), costs)
            if not chosen:
                sys.stderr.write(f"torchconform: {d}: shard {shard} holds none of its {everything} cases\n")
                continue
        prefix = "" if len(dirs) == 1 else f"{Path(d).name}::"
        before = len(items)
        for case in (c for c in corpus.cases if c.name in chosen):
            for artifact, _runtime, set_name in _core.plan(corpus, case.name):
                for dev in devices:
                    name = f"{prefix}{case.name}{':' + artifact if artifact else ''}[{set_name}-{dev}]"
                    items.append(CorpusItem.from_parent(session, name=name, corpus=corpus, case=case.name,
                                                        artifact=artifact, input_set=set_name, device=dev,
                                                        aoti_cache=config.getoption("torchconform_aoti_cache"),
                                                        timeout=config.getoption("torchconform_timeout"),
                                                        cases=chosen, threads=threads, nodeid=name,
                                                        libraries=config.getoption("torchconform_load_library"),
                                                        per_case=per_case))
                    items[-1].add_marker(pytest.mark.xdist_group(case.name))
        if len(items) == before:
            raise pytest.UsageError(f"--torchconform-corpus {d}: the corpus plans no result at all: nothing to verify")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A corpus whose items ran but none compared an output (every one an expected failure, an error or not run)
    verified nothing: the session must not be green. Under pytest-xdist every worker holds only its own items'
    tally: it hands it to the controller (``workeroutput``), which adds them up (``pytest_testnodedown``) and decides
    here, once, for the whole session."""
    config = session.config
    if hasattr(config, "workerinput"):  # an xdist worker: the controller decides
        config.workeroutput["torchconform_tally"] = json.dumps(_TALLY)
        return
    empty = [root for root, t in _TALLY.items() if t["ran"] and not t["verified"]]
    if empty and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    for root in empty:
        sys.stderr.write(f"torchconform: {terminal(root)}: nothing was verified (no result compared an output with "
                         "its golden)\n")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: a worker finished; its items' tally joins the session's."""
    tally = json.loads(getattr(node, "workeroutput", {}).get("torchconform_tally", "{}"))
    for root, t in tally.items():
        mine = _TALLY.setdefault(root, {"ran": 0, "verified": 0})
        mine["ran"] += int(t.get("ran", 0))
        mine["verified"] += int(t.get("verified", 0))
