"""Shared fixtures: the golden corpus, the C++ CLI, and helpers to make (broken) copies of a corpus."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from forkserver import SERVER_FOR_THIS_WORKER

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "golden"
_STARTED = pytest.StashKey[float]()

# `torchconform export` re-executes its interpreter with PYTHONHASHSEED=0 unless it is already set (TorchScript
# writes __constants__ in set order): with it set here, every export the tests start imports torch once, not twice.
# test_export's determinism test takes it away again to cover the re-execution.
os.environ["PYTHONHASHSEED"] = "0"


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STARTED] = time.time()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The worker's fork server stops; how its ``tc()`` commands ran is printed with the session's summaries."""
    SERVER_FOR_THIS_WORKER.close()
    if SERVER_FOR_THIS_WORKER.tally:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        out = ROOT / "build" / "test-results" / f"tc-commands-{worker}.summary.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(SERVER_FOR_THIS_WORKER.summary())


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Counts that tests leave in build/test-results/*.summary.txt during this session (the mutation sweep's: false
    PASS, payloads run, hangs, raw control characters), printed where CI's log shows them, xdist or not."""
    started = config.stash.get(_STARTED, None)
    if started is None or hasattr(config, "workerinput"):
        return
    for path in sorted((ROOT / "build" / "test-results").glob("*.summary.txt")):
        if path.stat().st_mtime >= started:
            terminalreporter.write_sep("-", path.name.removesuffix(".summary.txt"))
            terminalreporter.write(path.read_text())


# The ``torchconform`` command as a user runs it, in a fresh interpreter: the tests' one spelling of it (test_layout.py
# checks that no other test spells it again).
TC = (sys.executable, "-m", "torchconform")


def tc(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
       timeout: float = 600, fresh: bool = False) -> subprocess.CompletedProcess[str]:
    """The ``torchconform`` command, as a user runs it, in a process of its own: a fork of this worker's fork server
    (forkserver.py: torch already imported, nothing else done), or with ``fresh`` or an environment that changes what
    torch reads at import, a fresh interpreter."""
    full = {**os.environ, **(env or {})}
    why = "asked for" if fresh else SERVER_FOR_THIS_WORKER.why_fresh(full)
    SERVER_FOR_THIS_WORKER.tally[f"fresh: {why}" if why else "forked"] += 1
    if not why:
        return SERVER_FOR_THIS_WORKER.run(TC, [str(a) for a in args], cwd, full, timeout)
    return subprocess.run([*TC, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full)


def tc_here(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The ``torchconform`` command run in this process, for refusals: a check of the arguments or the input that ends
    the command before it exports or runs anything needs no fresh interpreter (one costs an import of torch). What the
    command leaves behind in a process (threads, a changed environment) would leak into the test session, so a command
    that gets as far as working runs through ``tc``."""
    import contextlib
    import io

    from torchconform.faces import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as e:  # (argparse's own refusals)
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return subprocess.CompletedProcess(["torchconform", *map(str, args)], code, out.getvalue(), err.getvalue())


def flat(text: str) -> str:
    """Text printed by another tool with its whitespace normalised: CMake wraps its messages to the terminal width
    (a longer path moves the line breaks), pytest and pip pad and wrap theirs."""
    return " ".join(text.split())


def compiled(corpus: Path) -> Path:
    """``corpus`` with the AOTInductor packages of its exported programs in the default cache, where the runner looks.
    A corpus exported by a test on this machine holds golden/'s programs byte for byte only where this CPU draws the
    same random inputs (torch.randn's vectorized path): elsewhere (ATEN_CPU_CAPABILITY=default, another ISA) they are
    other programs and are compiled here, once per cache."""
    import torch  # noqa: F401  (before _core)

    from torchconform.writing.aoti import compile_corpus

    compile_corpus(corpus, devices=["cpu"], log=lambda m: None)
    return corpus


def runner_path() -> Path:
    return Path(os.environ.get("TORCHCONFORM_RUN", ROOT / "build" / "cpp_runner" / "torchconform-run"))


@pytest.fixture(scope="session")
def runner() -> Path:
    path = runner_path()
    if not path.is_file():
        pytest.fail(f"C++ runner not found at {path}: build it first (ci/build.sh) or set TORCHCONFORM_RUN")
    return path


@pytest.fixture(scope="session")
def run_cli(runner: Path):
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(runner), *map(str, args)], capture_output=True, text=True, timeout=300)

    return run


@dataclass(frozen=True)
class GoldenRun:
    done: subprocess.CompletedProcess[str]
    json: Path
    junit: Path


@pytest.fixture(scope="session")
def golden_run(runner: Path, tmp_path_factory: pytest.TempPathFactory) -> GoldenRun:
    """One full verification of golden/ by the C++ runner (console, --json, --junit), shared by every test that
    only reads its results: the corpus is verified once per session for them, not once per test."""
    out = tmp_path_factory.mktemp("golden-run")
    done = subprocess.run([str(runner), str(GOLDEN), "--json", str(out / "r.json"), "--junit", str(out / "r.xml")],
                          capture_output=True, text=True, timeout=600)
    return GoldenRun(done, out / "r.json", out / "r.xml")


def manifests(corpus: Path = GOLDEN) -> dict[str, dict]:
    index = json.loads((corpus / "corpus.json").read_text())
    return {c["name"]: json.loads((corpus / c["manifest"]).read_text()) for c in index["cases"]}


def planned(corpus: Path = GOLDEN, device: str = "cpu") -> list[dict]:
    """Every result a full run of ``corpus`` on ``device`` produces (the C++ plan: artifact x input set, failed
    captures), each with the xfail mark that applies to it there (the variant's, else the input set's, else the
    case's; version and device conditions as the runner applies them)."""
    import torch  # noqa: F401  (before _core)

    from torchconform import _core

    opened = _core.Corpus.open(str(corpus))
    rows = []
    for c in opened.cases:
        for artifact, runtime, set_name in _core.plan(opened, c.name):
            mark = _core.applicable_mark(opened, c.name, artifact, set_name, _core.libtorch_version(), device)
            rows.append({"case": c.name, "artifact": artifact, "runtime": runtime, "set": set_name, "xfail": mark})
    return rows


def counts(corpus: Path = GOLDEN) -> tuple[int, int]:
    """(results expected to PASS, results expected to XFAIL) for a conforming run of ``corpus``."""
    rows = planned(corpus)
    xfail = sum(1 for r in rows if r["xfail"])
    return len(rows) - xfail, xfail


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_corpus(tmp_path: Path, src: Path = GOLDEN) -> Path:
    dst = tmp_path / "corpus"
    shutil.copytree(src, dst)
    return dst


def rehash(corpus: Path, case: str, index: bool = True) -> None:
    """Make a case's manifest and corpus.json agree with the files on disk again, so that a deliberate change to a
    file reaches the check under test instead of being stopped by the hash check."""
    mpath = corpus / case / "manifest.json"
    m = json.loads(mpath.read_text())
    refs = [m["artifact"]] if "artifact" in m else []
    refs += [s[key] for s in m["input_sets"] for key in ("inputs", "expected")]
    refs += [v for v in m.get("variants", []) if "file" in v]
    refs += [v["bundled"] for v in m.get("variants", []) if "file" in v.get("bundled", {})]
    for ref in refs:
        path = corpus / case / ref["file"]
        if path.is_file() and "sha256" in ref:  # (a deliberately missing or special file, or a record without a
            ref["sha256"] = sha256(path)         # hash, stays as the test made it)
            if "bytes" in ref:
                ref["bytes"] = path.stat().st_size
    mpath.write_text(json.dumps(m, indent=2) + "\n")
    if not index:  # the caller writes corpus.json itself
        return
    ipath = corpus / "corpus.json"
    index = json.loads(ipath.read_text())
    for c in index["cases"]:
        if c["name"] == case:
            c["sha256"] = sha256(mpath)
    ipath.write_text(json.dumps(index, indent=2) + "\n")


def result_id(row: dict) -> str:
    """A JSON report row's id as the runner prints it and --result/--list take it: case[:artifact]/set."""
    return row["case"] + (f":{row['artifact']}" if row["artifact"] else "") + f"/{row['input_set']}"


def result_ids(report: Path) -> list[str]:
    """The result ids of a JSON report, in report order."""
    return [result_id(r) for r in json.loads(report.read_text())["results"]]


def computed_here(corpus: Path, case: str, sets: list[str]) -> None:
    """Replaces the goldens of ``sets`` of ``case`` with what this machine's LibTorch computes from the case's
    TorchScript artifact, re-signed: a corpus this machine reproduces bit for bit, for the tests whose subject needs
    an exact reproduction (golden/ was exported on another CPU, and results move with the kernels a CPU gets)."""
    import torch

    from torchconform import _core

    opened = _core.Corpus.open(str(corpus))
    done = set()
    for r in _core.run_case(opened, case, device="cpu", sets=sets):
        if r.artifact == "":
            assert r.error == "", r.line
            path = corpus / case / "sets" / f"{r.input_set}.expected.pt"
            path.unlink()  # (a hard link or a copy: never write through it)
            torch.save(r.output, path)
            done.add(r.input_set)
    assert done == set(sets), done
    rehash(corpus, case)


def perturbed_failures() -> int:
    """How many results perturbed_corpus fails: every artifact run on simple_cnn/b4_32x32 except the expected
    failures."""
    return sum(1 for r in planned() if (r["case"], r["set"]) == ("simple_cnn", "b4_32x32") and not r["xfail"])


def perturbed_corpus(tmp_path: Path) -> Path:
    """A re-signed copy of the golden corpus with simple_cnn/b4_32x32's expected[2, 7] moved by 1e-3 (float32
    tolerance there is ~1e-5): every verifier must FAIL exactly that set, at that index."""
    import torch

    corpus = copy_corpus(tmp_path)
    path = corpus / "simple_cnn" / "sets" / "b4_32x32.expected.pt"
    expected = torch.load(path, weights_only=True)
    expected[2, 7] += 1e-3
    torch.save(expected, path)
    rehash(corpus, "simple_cnn")
    return corpus


def semantic_members(artifact: Path) -> dict[str, bytes]:
    """A TorchScript or torch.export zip without what legitimately varies between exports: ``*.debug_pkl`` (the
    Python stack of the trace, with the absolute paths of the exporting checkout and venv) and
    ``.data/serialization_id`` (a hash of the whole archive). Code, constants and weights remain, and so do exported
    programs' stack traces: the exporter makes their paths relative, so they must not differ between checkouts."""
    with zipfile.ZipFile(artifact) as z:
        return {n: z.read(n) for n in z.namelist()
                if not n.endswith(".debug_pkl") and not n.endswith(".data/serialization_id")}
