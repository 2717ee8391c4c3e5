"""Export cases and write the golden corpus (layout and schema: docs/corpus-format.md)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import torch

from .registry import NAME_RE, Built, Case, CaseError, InputSet
from .schema import validate
from .values import describe, freeze, resolve_method
from .warn import collect_warnings

FORMAT = "torchconform-corpus"
FORMAT_VERSION = 1
CORPUS_INDEX = "corpus.json"
MANIFEST = "manifest.json"
ARTIFACT = "artifact.pt"
EXPORT_THREADS = 1  # goldens computed single-threaded: reproducible, and independent of the exporting machine's cores


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": EXPORT_THREADS,
        "python_hash_seed": os.environ.get("PYTHONHASHSEED"),
    }


def apply_prelude(target: Any, s: InputSet) -> None:
    for call in s.prelude:
        resolve_method(target, call.method)(*call.args)


def call(target: Any, s: InputSet) -> Any:
    """One checked call: the seed (if any), then the call."""
    if s.seed is not None:
        torch.manual_seed(s.seed)
    return target(*s.args)


def invoke(target: Any, s: InputSet) -> Any:
    """Run one input set on ``target`` (an eager module/function or a loaded artifact): prelude calls, then the seed,
    then the call. The C++ runner does the same steps in the same order (prelude once per fresh load)."""
    apply_prelude(target, s)
    return call(target, s)


def eager_expected(built: Built, s: InputSet) -> Any:
    """The golden: the eager model (not the artifact), on a fresh copy when the prelude changes its state."""
    target = copy.deepcopy(built.eager) if s.prelude and isinstance(built.eager, torch.nn.Module) else built.eager
    with torch.no_grad():
        return freeze(invoke(target, s))


def node_counts(artifact: torch.jit.ScriptModule | torch.jit.ScriptFunction) -> dict[str, int]:
    graph = artifact.inlined_graph if isinstance(artifact, torch.jit.ScriptModule) else artifact.graph
    counts: Counter[str] = Counter()

    def walk(block: Any) -> None:
        for node in block.nodes():
            counts[node.kind()] += 1
            for b in node.blocks():
                walk(b)

    walk(graph)
    return dict(sorted(counts.items()))


def _save(value: Any, path: Path) -> dict[str, Any]:
    torch.save(value, path)
    return {"file": path.name if path.parent.name != "sets" else f"sets/{path.name}", "sha256": sha256_file(path)}


def export_case(case: Case, case_dir: Path) -> dict[str, Any]:
    """Build one case, write its artifact, input sets, goldens and manifest into ``case_dir``; return the manifest."""
    torch.manual_seed(case.seed)
    with collect_warnings() as caught:
        try:
            built = case.build(case.seed)
        except CaseError:
            raise
        except Exception as e:
            raise CaseError(f"case {case.name!r}: build failed: {type(e).__name__}: {e}") from e
    names = [s.name for s in built.input_sets]
    if not names:
        raise CaseError(f"case {case.name!r}: no input sets")
    if len(set(names)) != len(names):
        raise CaseError(f"case {case.name!r}: duplicate input set names {names}")

    (case_dir / "sets").mkdir(parents=True)
    artifact_path = case_dir / ARTIFACT
    built.artifact.save(str(artifact_path))

    sets = []
    for s in built.input_sets:
        if not NAME_RE.match(s.name):
            raise CaseError(f"case {case.name!r}: input set name {s.name!r} must match {NAME_RE.pattern}")
        args = freeze(s.args)
        expected = eager_expected(built, s)
        sets.append({
            "name": s.name,
            "description": s.description,
            "method": "forward",
            "seed": s.seed,
            "prelude": [{"method": c.method, "args": list(c.args)} for c in s.prelude],
            "inputs": _save(args, case_dir / "sets" / f"{s.name}.inputs.pt"),
            "expected": _save(expected, case_dir / "sets" / f"{s.name}.expected.pt"),
            "inputs_signature": describe(args),
            "expected_signature": describe(expected),
            "facts": s.facts,
            **({"xfail": {"reason": s.xfail}} if s.xfail else {}),
        })

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "case": case.name,
        "mode": case.mode,
        "description": case.description,
        "model": built.model,
        "artifact": {"file": ARTIFACT, "sha256": sha256_file(artifact_path), "bytes": artifact_path.stat().st_size},
        "exported_with": environment(),
        "export_conditions": {"module_mode": "eval", "grad": "disabled (torch.no_grad)",
                              "trace_example": describe(freeze(built.trace_example))
                              if built.trace_example is not None else None},
        "seeds": {"global": case.seed, "inputs": case.seed + 1},
        "tolerance": case.tolerance,
        "tracer_warnings": caught.records(("TracerWarning",)),
        "other_warnings": [w for w in caught.records() if w["category"] != "TracerWarning"],
        "hazards": built.hazards,
        "spec_deviations": built.spec_deviations,
        "notes": built.notes,
        "graph_node_counts": node_counts(built.artifact),
        **({"xfail": {"reason": case.xfail}} if case.xfail else {}),
        "input_sets": sets,
    }
    problem = validate("manifest", json.loads(json.dumps(manifest)))
    if problem:  # the writer and the schema disagree: a bug here, never a corpus the runner would refuse
        raise CaseError(f"case {case.name!r}: manifest does not satisfy docs/corpus-schema.json: {problem}")
    (case_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover(out: Path, log: Callable[[str], None]) -> None:
    """Clean up after an export that was killed: drop its partial directory, and if it died between its two renames
    (the old corpus moved aside, the new one not yet in place), put the old corpus back."""
    for leftover in sorted(out.parent.glob(f".{out.name}.*-*")):
        kind, _, pid = leftover.name.rpartition("-")
        if not pid.isdigit() or _pid_alive(int(pid)) or not leftover.is_dir():
            continue
        if kind.endswith(".old") and not out.exists():
            leftover.rename(out)
            log(f"restored {out} from {leftover.name} (an earlier export was killed while replacing it)")
        else:
            shutil.rmtree(leftover)
            log(f"removed {leftover.name} (left by an earlier export that was killed)")


def write_corpus(out: Path, cases: list[Case], *, force: bool = False,
                 log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> None:
    """Export ``cases`` into the corpus directory ``out``.

    The corpus is written into a temporary sibling directory and renamed into place at the end, so an export that
    fails part way leaves the previous corpus as it was. An existing corpus is replaced only with ``force``."""
    out = Path(out)
    _recover(out, log)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(EXPORT_THREADS)
    try:
        index = []
        t_all = time.perf_counter()
        for i, case in enumerate(cases, 1):
            t0 = time.perf_counter()
            manifest = export_case(case, tmp / case.name)
            index.append({"name": case.name, "manifest": f"{case.name}/{MANIFEST}",
                          "sha256": sha256_file(tmp / case.name / MANIFEST)})
            log(f"[{i}/{len(cases)}] {case.name}: {case.mode}, {len(manifest['input_sets'])} input sets, "
                f"{len(manifest['tracer_warnings'])} distinct tracer warnings ({time.perf_counter() - t0:.1f} s)")
        corpus = {"format": FORMAT, "format_version": FORMAT_VERSION, "exported_with": environment(),
                  "cases": index}
        assert not validate("corpus", corpus), validate("corpus", corpus)
        (tmp / CORPUS_INDEX).write_text(json.dumps(corpus, indent=2) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
        log(f"wrote {out} ({len(cases)} cases, {time.perf_counter() - t_all:.1f} s)")
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
