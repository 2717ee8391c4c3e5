"""``torchconform compat``: does a corpus made with one PyTorch give the same answers on another?

For every corpus (made with version A) and every runtime (version B: a Python interpreter with its torch, and a
``torchconform-run`` built against its LibTorch) it runs the corpus as-is from Python (``compat_probe run`` in B's
interpreter loads, calls and saves; this process judges with the core) and from C++ (B's runner, JSON report), and
with ``--reexport`` it re-exports the built-in cases with B and compares B's inputs and goldens with the first
corpus's. Every result is classified (``classify_*``):

- ``pass``; ``xfail`` (failed as a mark in the corpus says, e.g. ``{"reason": ..., "torch": "<2.0"}``);
- ``numeric drift`` (N of M elements outside the tolerance, max abs diff);
- ``load failure`` (the artifact, package or corpus cannot be read by B: the message says why);
- ``call failure`` (loaded, but calling it raised); ``crash`` (the process died or hung);
- ``xpass`` (passed although marked: a stale mark, which fails the run); ``not run`` (B lacks the runtime, e.g.
  torch.export before 2.1, AOTInductor in LibTorch 1.13), with the reason.

The matrix (rows: corpus version; columns: runtime version x language x device) is written as Markdown and JSON.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import _core
from ..errors import CorpusInputError, SetupError, UsageError
from ..text import markdown as md
from ..text import terminal

PASS, XFAIL, NOT_RUN, DRIFT, XPASS, CALL, LOAD, CRASH = (
    "pass", "xfail", "not run", "numeric drift", "xpass", "call failure", "load failure", "crash")
# A cell's headline is its most severe class (expected failures beside passes leave it "pass").
SEVERITY = [XFAIL, PASS, NOT_RUN, DRIFT, XPASS, CALL, LOAD, CRASH]
# Classes that fail the run: a stale mark, and results nobody could classify as an outcome of the versions.
FAILING = {XPASS, CRASH}

# An ERROR's class comes from its typed kind (runner.h ErrorKind), never from its words.
KIND_CLASS = {"missing_package": NOT_RUN, "not_run": NOT_RUN, "load": LOAD, "corpus": LOAD, "call": CALL,
              "crash": CRASH, "timeout": CRASH}

# export/ (above the torchconform package): what another interpreter puts on PYTHONPATH.
EXPORT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Runtime:
    name: str  # the version label, e.g. "2.14.1"
    python: str  # an interpreter with that torch
    runner: str  # torchconform-run built against its LibTorch ("" : no C++ column)
    torch: str = ""  # what the interpreter's torch reports (filled in by probe_runtime)

    @staticmethod
    def parse(text: str) -> Runtime:
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise UsageError(f"--runtime {text!r}: expected NAME:PYTHON[:RUNNER]")
        return Runtime(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def _last_line(text: str | None, default: str) -> str:
    """The last non-empty line of a process's stderr (where Python and the runner put the error), else ``default``."""
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else default


def probe_runtime(rt: Runtime) -> None:
    """Checks that the runtime's interpreter imports torch (a broken runtime is a usage error, not a matrix cell) and
    records the version it reports next to the label."""
    try:
        done = subprocess.run([rt.python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                              text=True, timeout=300)
    except OSError as e:
        raise SetupError(f"--runtime {rt.name}: cannot run {rt.python}: {e}") from e
    if done.returncode != 0:
        raise SetupError(f"--runtime {rt.name}: {rt.python} cannot import torch: {_last_line(done.stderr, '?')}")
    rt.torch = done.stdout.strip().splitlines()[-1]


def classify_cpp_row(row: dict[str, Any]) -> dict[str, Any]:
    """One row of a C++ runner's JSON report -> {"class", "detail"}."""
    verdict, error = row["verdict"], row.get("error", "")
    if verdict == "PASS":
        return {"class": PASS, "detail": ""}
    if verdict == "XFAIL":
        return {"class": XFAIL, "detail": row.get("xfail_reason", "")}
    if verdict == "XPASS":
        return {"class": XPASS, "detail": f"marked xfail ({row.get('xfail_reason', '')}) but passed"}
    if verdict == "FAIL":
        return {"class": DRIFT, "detail": f"{row['mismatched']}/{row['total']} elements, max abs "
                                          f"{row['max_abs'] if row['max_abs'] is not None else 'inf'}"}
    return {"class": KIND_CLASS.get(row.get("error_kind", ""), CALL), "detail": error}


# The probe's statuses as the core's error kinds (what _core.mark_may_cover judges).
PROBE_ERROR_KIND = {"corpus_error": "corpus", "load_error": "load", "call_error": "call", "unsupported": "not_run",
                    "pass": "none", "mismatch": "none"}


def classify_python(status: str, detail: str, mark: str | None) -> dict[str, Any]:
    """One result of the Python column, judged in this process -> {"class", "detail"}. ``status``: the probe's
    (corpus_error, load_error, call_error, unsupported) or the comparison's (pass, mismatch); ``mark``: the xfail
    reason that applies to the probed PyTorch's version (``_core.applicable_mark``), which covers the result where the
    runner's rule says a mark may (``_core.mark_may_cover``: never a refused corpus nor a runtime that is missing)."""
    if mark and not _core.mark_may_cover(PROBE_ERROR_KIND.get(status, "call")):
        mark = None
    if status == "pass":
        return {"class": XPASS, "detail": f"marked xfail ({mark}) but passed"} if mark else {"class": PASS,
                                                                                             "detail": ""}
    if mark:
        return {"class": XFAIL, "detail": mark}
    return {"class": {"unsupported": NOT_RUN, "mismatch": DRIFT, "load_error": LOAD, "corpus_error": LOAD}.get(
        status, CALL), "detail": detail}


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """A cell from its classified results: counts per class, the headline (most severe class), one example each."""
    counts: dict[str, int] = {}
    examples: dict[str, str] = {}
    for r in results:
        counts[r["class"]] = counts.get(r["class"], 0) + 1
        if r["class"] != PASS and r["class"] not in examples:
            examples[r["class"]] = f"{r['id']}: {r['detail']}" if r.get("id") else r["detail"]
    headline = max(counts, key=SEVERITY.index) if counts else NOT_RUN
    return {"class": headline, "counts": counts, "examples": examples, "results": results}


def process_failure(what: str, done: subprocess.CompletedProcess) -> dict[str, Any]:
    """A cell whose process gave no results: a signal is a crash; an error message before any result is the
    runtime refusing the corpus as a whole (a load failure), with that message."""
    message = _last_line(done.stderr, f"exit status {done.returncode}, no output")
    if done.returncode < 0 or done.returncode >= 128:
        return summarize([{"class": CRASH, "detail": f"{what} died ({done.returncode}): {message}", "id": ""}])
    return summarize([{"class": LOAD, "detail": f"{what}: {message}", "id": ""}])


def _result_id(case: str, artifact: str, set_name: str) -> str:
    return f"{case}{':' + artifact if artifact else ''}/{set_name}"


def _env() -> dict[str, str]:
    """Another interpreter runs this source tree (export/ on its path); exports keep their fixed hash seed."""
    return {**os.environ, "PYTHONPATH": str(EXPORT_ROOT), "PYTHONHASHSEED": "0"}


class Unreadable(CorpusInputError):
    """A TorchScript archive this process's LibTorch cannot open (a newer file format): its code cannot be checked,
    so it is not staged; the result is a load failure with LibTorch's message, as the runner reports it."""


class Stager:
    """Corpus files for an interpreter without the core (another PyTorch's): each read once through the core's
    checked reader (a regular file inside the corpus, of its declared size and SHA-256; TorchScript code checked for
    operators that act outside the process) and copied into this process's private work directory, which is all the
    other interpreter ever opens."""

    def __init__(self, opened: Any, work: Path):
        self.opened, self.work, self.count = opened, work, 0

    def __call__(self, case: str, rel: str, torchscript: bool = False) -> dict[str, Any]:
        data = _core.read_case_file(self.opened, case, rel)
        if torchscript:
            unreadable = _core.check_torchscript_code(data, f"{case}/{rel}")
            if unreadable:  # this core's LibTorch cannot open it to check its code: it is not handed over
                raise Unreadable(unreadable)
        self.count += 1
        path = self.work / f"staged-{self.count}"
        path.write_bytes(data)
        return {"file": rel, "staged": str(path)}


def python_jobs(opened: Any, work: Path, repeat: int = 2) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The probe's jobs from the core's plan, with their files staged in ``work``, and the results that need no
    probe (failed captures, refused manifests, files the checked reader refuses) as (case, artifact, set, status,
    message). An exported program is one Python job per variant (its ``.module()``), whatever C++ runtimes it
    lists."""
    jobs: list[dict[str, Any]] = []
    direct: list[dict[str, Any]] = []
    stage = Stager(opened, work)
    for case in opened.cases:
        if case.error:
            direct.append({"case": case.name, "artifact": "", "set": "*", "status": "corpus_error",
                           "message": case.error, "outputs": ""})
            continue
        sets = {s["name"]: s for s in json.loads(case.manifest_json)["input_sets"]}
        seen = set()
        for a in _core.plan_artifacts(opened, case.name):
            label = a["variant"] if a["kind"] == "exported_program" else a["label"]
            if a["status"] == "failed_capture":
                direct.append({"case": case.name, "artifact": label, "set": "*", "status": "load_error",
                               "message": a["why"], "outputs": ""})
                continue
            if label in seen:  # the same program for another C++ runtime: one Python run
                continue
            seen.add(label)
            try:
                file = stage(case.name, a["file"]["file"], torchscript=a["kind"] == "torchscript")
            except (_core.CorpusError, Unreadable) as e:  # not handed to the other interpreter
                status = "load_error" if isinstance(e, Unreadable) else "corpus_error"  # (a refusal: never marked)
                direct += [{"case": case.name, "artifact": label, "set": n, "status": status,
                            "message": str(e), "outputs": ""} for n in a["sets"]]
                continue
            job_sets = []
            for n in a["sets"]:
                try:
                    inputs = stage(case.name, sets[n]["inputs"]["file"])
                except _core.CorpusError as e:
                    direct.append({"case": case.name, "artifact": label, "set": n, "status": "corpus_error",
                                   "message": str(e), "outputs": ""})
                    continue
                job_sets.append({"name": n, "inputs": inputs, "method": sets[n]["method"], "seed": sets[n]["seed"],
                                 "prelude": sets[n]["prelude"], "keywords": sets[n].get("keywords", [])})
            if job_sets:
                jobs.append({"case": case.name, "artifact": label, "kind": a["kind"], "file": file,
                             "int_outputs_as_tensors": a["int_outputs_as_tensors"], "repeat": repeat,
                             "sets": job_sets})
    return jobs, direct


def judge_python(opened: Any, version: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The probe's raw results judged here, with the core: outputs against the goldens (``_core.compare_output``,
    the runner's comparator and tolerances), marks for the probed version (``_core.applicable_mark``)."""
    from ..safeload import load_data

    out = []
    for r in rows:
        status, detail = r["status"], r["message"]
        if status == "ok":
            status, detail = "pass", ""
            try:
                for i, output in enumerate(load_data(r["outputs"]), 1):
                    c = _core.compare_output(opened, r["case"], r["artifact"], r["set"], output)
                    if not c.ok:
                        status = "mismatch"
                        detail = f"{c.mismatched}/{c.total} elements, max abs {c.max_abs:.3g}: {c.summary()} (call {i})"
                        break
            except _core.CorpusError as e:  # the golden cannot be read (as the runner would refuse it)
                status, detail = "corpus_error", str(e)
        mark = _core.applicable_mark(opened, r["case"], r["artifact"], r["set"], version, "cpu")  # compat: cpu
        out.append({**classify_python(status, detail, mark), "id": _result_id(r["case"], r["artifact"], r["set"])})
    return out


def probe(python: str, corpus: Path, opened: Any, timeout: float, work: Path) -> tuple[
        list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    """Runs the corpus's plan in another interpreter (the probe: load, call, save, into ``work``) and returns its raw
    rows, plus those that needed no probe, with the probe's process. Raises subprocess.TimeoutExpired."""
    jobs, direct = python_jobs(opened, work)
    (work / "jobs.json").write_text(json.dumps(jobs))
    cmd = [python, "-m", "torchconform.tools.compat_probe", "run", str(work / "jobs.json"), str(work)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    return direct + [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")], done


def run_python_cell(runtime: Runtime, corpus: Path, timeout: float) -> dict[str, Any]:
    try:
        opened = _core.Corpus.open(str(corpus))
    except _core.CorpusError as e:
        return summarize([{"class": LOAD, "detail": str(e), "id": ""}])
    with tempfile.TemporaryDirectory(prefix="torchconform-probe-") as work:
        try:
            rows, done = probe(runtime.python, corpus, opened, timeout, Path(work))
        except subprocess.TimeoutExpired:
            return summarize([{"class": CRASH, "detail": f"no result within {timeout:.0f} s", "id": ""}])
        if done.returncode != 0 or not rows:
            return process_failure(f"{runtime.python} (torch {runtime.name})", done)
        return summarize(judge_python(opened, runtime.torch or runtime.name, rows))


def run_cpp_cell(runtime: Runtime, corpus: Path, aoti_cache: Path, timeout: float,
                 extra: list[str] | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The corpus verified by ``runtime``'s runner, classified; ``env``: extra environment for the runner (e.g.
    LD_PRELOAD of a library a service would link). The cell keeps the runner's stderr (its warnings are findings)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [runtime.runner, str(corpus), "--device", "cpu", "--json", str(report), "--quiet",
               "--aoti-cache", str(aoti_cache), *(extra or [])]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, **env} if env else None)
        except subprocess.TimeoutExpired:
            return summarize([{"class": CRASH, "detail": f"no result within {timeout:.0f} s", "id": ""}])
        if not report.exists():
            return process_failure(f"{runtime.runner} (LibTorch {runtime.name})", done)
        data = json.loads(report.read_text())
    cell = summarize([{**classify_cpp_row(r), "id": _result_id(r["case"], r["artifact"], r["input_set"])}
                      for r in data["results"]])
    cell["runtimes"] = data.get("runtimes", {})
    cell["stderr"] = done.stderr[-20000:]
    cell["rows"] = data["results"]
    missing = [n for n, r in cell["runtimes"].items() if not r["available"]]
    if missing:  # runtimes this LibTorch lacks make no rows: say so in the cell
        cell["not_built"] = {n: cell["runtimes"][n]["detail"] for n in missing}
    return cell


def compile_for(runtime: Runtime, corpus: Path, cache: Path, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """AOTInductor packages for ``runtime``'s runner, compiled by its own torch, at the paths the core's key gives for
    its version (cached)."""
    try:
        opened = _core.Corpus.open(str(corpus))
    except _core.CorpusError:
        return []  # the cells report the corpus as unreadable
    programs = [(c, v) for c in opened.cases if not c.error for v in c.variants
                if v.kind == "exported_program" and v.file and "aoti" in v.runtimes]
    with tempfile.TemporaryDirectory(prefix="torchconform-probe-") as tmp:
        stage = Stager(opened, Path(tmp))
        jobs = []
        for c, v in programs:
            try:
                file = {**stage(c.name, v.file), "sha256": v.sha256}
            except _core.CorpusError as e:  # the C++ cell reports the program as refused; the log says why
                log(f"[compat] {c.name}:{v.name}: not compiled: {terminal(e)}")
                continue
            key = _core.program_key(opened, c.name, v.name)
            package = _core.aoti_package_path(str(cache), key, "cpu", runtime.torch or runtime.name)
            jobs.append({"case": c.name, "variant": v.name, "file": file, "pytree_types": v.pytree_types,
                         "forbidden_ops": list(_core.side_effect_operators()), "package": package,
                         "program_key": key, "options": v.aoti_options})
        (Path(tmp) / "jobs.json").write_text(json.dumps(jobs))
        cmd = [runtime.python, "-m", "torchconform.tools.compat_probe", "compile", str(Path(tmp) / "jobs.json")]
        done = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    recs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:  # the C++ cell then reports the packages as missing; the log says why
        message = _last_line(done.stderr, f"exit status {done.returncode}")
        log(f"[compat] torch {runtime.name}: compiling AOTInductor packages failed: {message}")
        recs.append({"status": "error", "message": message, "seconds": 0.0})
    compiled = [r for r in recs if r["status"] == "compiled"]
    if compiled or any(r["status"] == "error" for r in recs):
        log(f"[compat] torch {runtime.name}: {len(compiled)} AOTInductor packages compiled "
            f"({sum(r['seconds'] for r in compiled):.0f} s), "
            f"{sum(r['status'] == 'error' for r in recs)} failed")
    return recs


def aoti_across(row: dict[str, Any], runtimes: list[Runtime], corpus: Path, timeout: float,
                log: Callable[[str], None], env: dict[str, str] | None = None,
                only_into: str = "") -> dict[str, dict[str, Any]]:
    """AOTInductor packages across versions (pytorch#123745: no promise that a package loads in another release):
    for every pair of runtimes whose runner has AOTInductor, the packages version A compiled from this corpus's
    programs, put where version B's runner looks for its own (a cache of their own, under B's key), run by B's runner
    on their results only (``--result case:variant@aoti/*``) and classified like every C++ row. Keys "A->B"; A == B
    is the diagonal (each version's own packages, the C++ cell's aoti rows again)."""
    able = [rt for rt in runtimes if rt.runner and row["cells"].get(f"{rt.name}/cpp", {}).get(
        "runtimes", {}).get("aoti", {}).get("available")]
    cells: dict[str, dict[str, Any]] = {}
    for a in able:
        packages = [r for r in row.get("aoti_compile", {}).get(a.name, [])
                    if r.get("status") in ("compiled", "cached") and Path(r["package"]).is_file()]
        for b in able:
            if only_into and b.name != only_into:
                continue
            key = f"{a.name}->{b.name}"
            if not packages:
                cells[key] = summarize([{"class": NOT_RUN, "id": "",
                                         "detail": f"torch {a.name} compiled no AOTInductor package here"}])
                continue
            preload = (env or {}).get("LD_PRELOAD")
            log(f"[compat] {row['corpus']}: AOTInductor packages of torch {a.name} in LibTorch {b.name}'s runner"
                + (f" (LD_PRELOAD={Path(preload).name})" if preload else ""))
            with tempfile.TemporaryDirectory(prefix="torchconform-aoti-across-") as tmp:
                selection = []
                for r in packages:
                    target = Path(_core.aoti_package_path(tmp, r["program_key"], "cpu", b.torch or b.name))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(r["package"], target)
                    # with the digest recorded at its compile, which the runner checks before it loads anything
                    recorded = Path(r["package"]).with_name("key.json")
                    if recorded.is_file():
                        shutil.copyfile(recorded, target.with_name("key.json"))
                    selection += ["--result", f"{r['case']}:{r['variant']}@aoti/*"]
                cell = run_cpp_cell(b, corpus, Path(tmp), timeout, selection, env)
            for key_ in ("runtimes", "not_built", "rows"):
                cell.pop(key_, None)
            cells[key] = cell
    return cells


def across_failures(rows: list[dict[str, Any]]) -> list[str]:
    """Across versions, a load failure, drift or even a crash (an older loader killed by a newer package, isolated in
    its case's process) is a finding about the versions; on the diagonal (a version's own packages) a crash is not,
    and fails the run as in every other cell."""
    out = []
    for row in rows:
        for key, cell in row.get("aoti_across", {}).items():
            a, b = key.split("->")
            if a == b and CRASH in cell["counts"]:
                out.append(f"{row['corpus']}: AOTInductor packages {key}: {CRASH} ({cell['examples'].get(CRASH, '')})")
    return out


def reexport(runtime: Runtime, out: Path, timeout: float) -> tuple[bool, str]:
    """The built-in cases exported with ``runtime``'s torch into ``out``: (ok, message)."""
    cmd = [runtime.python, "-m", "torchconform", "export", "--out", str(out), "--force", "--quiet"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    except subprocess.TimeoutExpired:
        return False, f"export took longer than {timeout:.0f} s"
    if done.returncode != 0 or not (out / "corpus.json").exists():
        return False, _last_line(done.stderr, f"exit status {done.returncode}")
    return True, ""


def leaf_stats(c: Any) -> list[dict[str, Any]]:
    """Per compared output (leaf) of a core Comparison: how far apart, the minimum tolerance that would pass it, and
    whether the tolerance it was compared under does (JSON-safe: inf as None)."""
    def num(v: float) -> float | None:
        return None if v != v or v in (float("inf"), float("-inf")) else float(v)

    return [{"path": leaf.path, "dtype": leaf.dtype, "ok": bool(leaf.ok), "total": int(leaf.total),
             "mismatched": int(leaf.mismatched), "max_abs": num(leaf.max_abs), "max_rel": num(leaf.max_rel),
             "max_ulp": num(leaf.max_ulp), "needed_rtol": num(leaf.needed_rtol), "needed_atol": num(leaf.needed_atol),
             "tolerance": leaf.tolerance} for leaf in c.leaves]


def compare_corpora(reference: Path, other: Path) -> dict[str, Any]:
    """``other``'s inputs and goldens against ``reference``'s, set by set, under the reference's tolerance: what a
    re-export with another PyTorch changes. Both corpora are read and compared through the core (hash-checked,
    the runner's comparator)."""
    ref, oth = _core.Corpus.open(str(reference)), _core.Corpus.open(str(other))

    def manifests(opened: Any) -> dict[str, dict[str, Any]]:
        return {c.name: json.loads(c.manifest_json) for c in opened.cases if not c.error}

    exact = {"default": {"mode": "exact"}, "outputs": {}}
    ref_m, oth_m = manifests(ref), manifests(oth)
    results = []
    for name, m in ref_m.items():
        if name not in oth_m:
            results.append({"class": LOAD, "id": f"{name}/*", "detail": "case missing from the re-export"})
            continue
        other_sets = {s["name"]: s for s in oth_m[name]["input_sets"]}
        for s in m["input_sets"]:
            rid = f"{name}/{s['name']}"
            o = other_sets.get(s["name"])
            if o is None:
                results.append({"class": LOAD, "id": rid, "detail": "input set missing from the re-export"})
                continue
            if o["inputs"]["sha256"] == s["inputs"]["sha256"] and o["expected"]["sha256"] == s["expected"]["sha256"]:
                results.append({"class": PASS, "id": rid, "detail": "", "bitwise": True})
                continue
            (ref_in, ref_exp), (oth_in, oth_exp) = (_core.load_set(ref, name, s["name"]),
                                                    _core.load_set(oth, name, s["name"]))
            if o["inputs"]["sha256"] != s["inputs"]["sha256"]:
                c = _core.compare(ref_in, oth_in, exact)
                if not c.ok:  # goldens of other inputs say nothing about each other: not compared
                    results.append({"class": NOT_RUN, "id": rid, "detail": f"the re-export drew other inputs "
                                                                           f"({c.mismatched}/{c.total} elements "
                                                                           f"differ, max abs {c.max_abs:.3g}): "
                                                                           "its goldens are not comparable"})
                    continue
            c = _core.compare(ref_exp, oth_exp, m["tolerance"])
            # Other bytes (e.g. another torch.save layout) can still hold bitwise-equal values.
            same_values = c.ok and _core.compare(ref_exp, oth_exp, exact).ok
            results.append({"class": DRIFT if not c.ok else PASS, "id": rid, "bitwise": same_values,
                            "detail": f"goldens differ: {c.mismatched}/{c.total} elements, max abs {c.max_abs:.3g}: "
                                      f"{c.summary()}" if not c.ok else f"within tolerance, max abs {c.max_abs:.3g}",
                            "outputs": leaf_stats(c)})
    cell = summarize(results)
    # Bitwise-equal goldens vs equal within the tolerance: both pass, the difference is news.
    cell["bitwise"] = sum(1 for r in results if r.get("bitwise"))
    return cell


def _cell_text(cell: dict[str, Any], notes: list[str]) -> str:
    counts = cell["counts"]
    total = sum(counts.values())
    parts = [f"**{cell['class']}**" + (f" {counts[cell['class']]}/{total}" if total > 1 else "")
             + (f" ({cell['bitwise']} bitwise)" if "bitwise" in cell else "")]
    parts += [f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: SEVERITY.index(kv[0]), reverse=True)
              if k != cell["class"]]
    refs = []
    texts = [f"{cls}: {example}" for cls, example in cell["examples"].items()]
    texts += [f"not run: {name}: {why}" for name, why in cell.get("not_built", {}).items()]
    for text in texts:  # the same note once, referenced from every cell it applies to
        if text not in notes:
            notes.append(text)
        refs.append(str(notes.index(text) + 1))
    return ", ".join(parts) + (f" [{', '.join(refs)}]" if refs else "")


def markdown(result: dict[str, Any]) -> str:
    runtimes = result["runtimes"]
    cols = [(r["name"], lang) for r in runtimes for lang in ("python", "cpp") if lang == "python" or r["runner"]]
    notes: list[str] = []
    out = ["# Compatibility matrix", "", f"Command: `{result['command']}`", "",
           "Device: cpu. Runtimes: " + "; ".join(
               f"{r['name']} (torch {r.get('torch') or '?'}: `{r['python']}`"
               + (f", `{r['runner']}`" if r["runner"] else "") + ")"
               for r in runtimes) + ".", "",
           "Rows: the corpus and the PyTorch it was exported with. Columns: the runtime verifying it, from Python "
           "(`torch.jit.load` / `torch.export.load`) and from C++ (`torchconform-run`). Bracketed numbers refer to "
           "the notes below the table.", "",
           "| corpus (exported with) | " + " | ".join(f"{n} {'Python' if lang == 'python' else 'C++'}"
                                                  for n, lang in cols)
           + (" | re-export vs " + result["reference"] + " |" if result.get("reexports") else " |"),
           "|---|" + "---|" * len(cols) + ("---|" if result.get("reexports") else "")]
    for row in result["rows"]:
        cells = [_cell_text(row["cells"][f"{n}/{lang}"], notes) for n, lang in cols]
        if result.get("reexports"):
            re = row.get("reexport")
            cells.append(_cell_text(re, notes) if re else "-")
        out.append(f"| {md(row['corpus'])} (torch {md(row['exported_with'])}) | " + " | ".join(cells) + " |")
    for row in result["rows"]:
        across = row.get("aoti_across")
        if not across:
            continue
        names = list(dict.fromkeys(k.split("->")[0] for k in across))
        out += ["", f"AOTInductor packages across versions ({row['corpus']}'s programs): rows, the torch that compiled "
                    "the packages; columns, the LibTorch whose runner loads and runs them (its own cache key pointed "
                    "at the other version's package). The diagonal is each version's own packages.", "",
                "| compiled by | " + " | ".join(f"run by {n} C++" for n in names) + " |",
                "|---|" + "---|" * len(names)]
        for a in names:
            out.append(f"| torch {a} | " + " | ".join(_cell_text(across[f"{a}->{b}"], notes) for b in names) + " |")
    # Notes and failures carry corpus text (xfail reasons, error messages): inert Markdown, on one line each.
    out += ["", "Notes:", ""] + [f"{i}. {md(n)}" for i, n in enumerate(notes, 1)]
    if result.get("failing"):
        out += ["", "**The run fails:** " + "; ".join(md(f) for f in result["failing"])]
    out.append("")
    return "\n".join(out)


def run(corpora: list[tuple[str, Path]], runtimes: list[Runtime], out: Path, *, do_reexport: bool,
        aoti_cache: Path, timeout: float, command: str, log: Callable[[str], None]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    for name, path in corpora:
        if not (path / "corpus.json").exists():
            raise UsageError(f"--corpus {name}:{path}: no corpus.json there")
    rows_in: list[tuple[str, Path, Runtime | None]] = [(name, path, None) for name, path in corpora]
    reexport_failures: dict[str, str] = {}
    if do_reexport:
        from ..authoring.registry import select

        builtin = {c.name for c in select([])}
        reference = {c["name"] for c in json.loads((corpora[0][1] / "corpus.json").read_text())["cases"]}
        if not reference <= builtin:
            raise UsageError(f"--reexport re-exports torchconform's built-in cases, and the reference corpus "
                             f"{corpora[0][0]} holds others ({', '.join(sorted(reference - builtin))}): for your own "
                             "cases use `torchconform upgrade --cases FILE --from A --to B` (docs/upgrade.md)")
        for rt in runtimes:
            target = out / f"reexport-{rt.name}"
            log(f"[compat] re-exporting the built-in cases with torch {rt.name}")
            t0 = time.perf_counter()
            ok, message = reexport(rt, target, timeout)
            log(f"[compat]   {'done' if ok else 'FAILED: ' + message} ({time.perf_counter() - t0:.0f} s)")
            if ok:
                rows_in.append((f"re-export {rt.name}", target, rt))
            else:
                reexport_failures[rt.name] = message
    rows = []
    for label, path, made_by in rows_in:
        meta = json.loads((path / "corpus.json").read_text())
        exported_with = meta.get("exported_with", {}).get("torch", "?")
        row: dict[str, Any] = {"corpus": label, "path": str(path), "exported_with": exported_with, "cells": {}}
        for rt in runtimes:
            log(f"[compat] {label} on torch {rt.name}: Python")
            t0 = time.perf_counter()
            row["cells"][f"{rt.name}/python"] = run_python_cell(rt, path, timeout)
            if rt.runner:
                row.setdefault("aoti_compile", {})[rt.name] = compile_for(rt, path, aoti_cache, log)
                log(f"[compat] {label} on torch {rt.name}: C++")
                cell = run_cpp_cell(rt, path, aoti_cache, timeout)
                cell.pop("rows", None)  # (the classified results are the cell's; the report rows stay with upgrade)
                row["cells"][f"{rt.name}/cpp"] = cell
            log(f"[compat]   {time.perf_counter() - t0:.0f} s")
        if made_by is not None:
            row["reexport"] = compare_corpora(corpora[0][1], path)
        if path == corpora[0][1]:  # the reference corpus's programs, compiled by each version, run by each other
            row["aoti_across"] = aoti_across(row, runtimes, path, timeout, log)
        rows.append(row)
    for name, message in reexport_failures.items():
        rows.append({"corpus": f"re-export {name}", "path": "", "exported_with": name, "cells": {
            k: summarize([{"class": NOT_RUN, "detail": "no corpus: the re-export failed", "id": ""}])
            for rt in runtimes for k in (f"{rt.name}/python", f"{rt.name}/cpp")},
            "reexport": summarize([{"class": LOAD, "detail": f"re-export failed: {message}", "id": ""}])})
    failing = [f"{row['corpus']} on {key}: {cls} ({cell['examples'].get(cls, '')})"
               for row in rows for key, cell in row["cells"].items() for cls in FAILING if cls in cell["counts"]]
    failing += across_failures(rows)
    result = {"command": command, "reference": corpora[0][0],
              "runtimes": [{"name": r.name, "python": r.python, "runner": r.runner, "torch": r.torch}
                           for r in runtimes],
              "reexports": do_reexport, "rows": rows, "failing": failing}
    (out / "compat.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "compat.md").write_text(markdown(result))
    return result


def command_line(argv: list[str]) -> str:
    return "torchconform " + shlex.join(argv)


def main_entry(corpora: list[str], runtimes: list[str], out: Path, do_reexport: bool, aoti_cache: Path | None,
               timeout: float, argv: list[str], log: Callable[[str], None]) -> tuple[dict[str, Any], int]:
    parsed_corpora = []
    for text in corpora:
        name, _, path = text.partition(":")
        if not name or not path:
            raise UsageError(f"--corpus {text!r}: expected NAME:DIR")
        parsed_corpora.append((name, Path(path)))
    if not parsed_corpora:
        raise UsageError("give at least one --corpus NAME:DIR")
    parsed_runtimes = [Runtime.parse(t) for t in runtimes]
    if not parsed_runtimes:
        raise UsageError("give at least one --runtime NAME:PYTHON[:RUNNER]")
    for rt in parsed_runtimes:
        if not Path(rt.python).exists() and not any(
                (Path(d) / rt.python).exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
            raise UsageError(f"--runtime {rt.name}: no interpreter {rt.python}")
        if rt.runner and not Path(rt.runner).exists():
            raise UsageError(f"--runtime {rt.name}: no runner {rt.runner}")
        probe_runtime(rt)
    if aoti_cache is None:
        from ..writing.aoti import default_cache

        aoti_cache = default_cache()
    result = run(parsed_corpora, parsed_runtimes, out, do_reexport=do_reexport, aoti_cache=aoti_cache,
                 timeout=timeout, command=command_line(argv), log=log)
    return result, 1 if result["failing"] else 0


if __name__ == "__main__":  # pragma: no cover - use `torchconform compat`
    sys.exit("use: torchconform compat")
