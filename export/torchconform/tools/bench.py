"""``torchconform bench``: what running a model without Python buys, and how fast the conformance run itself is.

Models: every built-in case's model, at batch 1 and a larger batch (SimpleCNN also at the spec's 16x3x224x224),
timed as Python eager, TorchScript called from Python, TorchScript called from C++ (the runner's own loading and
calling code, timing loop in C++), AOTInductor from C++ and, where the corpus holds them (export --executorch) and the
runner has ExecuTorch's runtime, the ExecuTorch programs from C++ (CPU kernels and XNNPACK); plus load and first-call
times, at 1 thread and at the machine's core count. The spec's own profiling recipe is re-run as written, so its
"10-30% speedup on CPU" claim is checked on this machine.

Suite: ``verify`` against its floor (raw LibTorch load + calls of every artifact and input set, same process),
where the rest goes, the runner's per-call cost against a raw ``Module::forward``, the obvious Python loop
(tools/naive_loop.py) against ``torchconform-run``, and AOTInductor compile times with a cold and a warm cache.

Writes bench.md, bench.json and bench.png (speedups) into --out. A command that prints numbers, not a test.
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .. import _core, verification
from ..errors import CorpusInputError, SetupError, UsageError

MODES = ("eager", "ts_python", "ts_cpp", "frozen_cpp", "aoti_cpp", "et_cpp", "et_xnnpack_cpp")
MODE_TITLES = {"eager": "Python eager", "ts_python": "TorchScript (Python)", "ts_cpp": "TorchScript (C++)",
               "frozen_cpp": "frozen TorchScript (C++)", "aoti_cpp": "AOTInductor (C++)",
               "et_cpp": "ExecuTorch CPU kernels (C++)", "et_xnnpack_cpp": "ExecuTorch XNNPACK (C++)"}
# The ExecuTorch programs export --executorch lowers from a program: mode -> the variant's name suffix.
EXECUTORCH_MODES = {"et_cpp": "_et", "et_xnnpack_cpp": "_et_xnnpack"}


@dataclass(frozen=True)
class Policy:
    """How many calls are timed; the C++ loops get the same numbers (``_core.bench_artifact``)."""

    warmup_calls: int = 3
    warmup_seconds: float = 0.2
    min_calls: int = 15
    min_seconds: float = 0.5
    spec_iters: int = 100  # the spec's recipe: 20 warm-up calls, then the mean of 100

    def cpp(self) -> dict[str, Any]:
        return {"warmup_calls": self.warmup_calls, "warmup_seconds": self.warmup_seconds,
                "min_calls": self.min_calls, "min_seconds": self.min_seconds}


QUICK = Policy(warmup_calls=1, warmup_seconds=0.0, min_calls=3, min_seconds=0.0, spec_iters=2)


@dataclass
class Workload:
    label: str
    args: Callable[[torch.Generator], tuple[Any, ...]]
    spec: bool = False  # the spec's profiling input


@dataclass
class Model:
    case: str
    title: str
    workloads: list[Workload]
    eager: Callable[[Any], Callable[..., Any]] = lambda built: built.eager
    aoti: str | None = None    # the artifact label of its exported program in the runner
    frozen: str | None = None  # its frozen TorchScript variant
    notes: list[str] = field(default_factory=list)


def _models() -> list[Model]:
    from ..authoring import models
    from ..authoring.builtin.dynamic_router import ROUTER_D, ROUTER_EXPERTS
    from ..authoring.builtin.full_model import FULL_D_MODEL

    def masked_eager(built):
        m = models.MaskedRouter(ROUTER_D, ROUTER_EXPERTS).eval()
        m.load_state_dict(built.artifact.state_dict())
        return m

    d, classes = ROUTER_D, 10
    return [
        Model("simple_cnn", "SimpleCNN (traced)", [
            Workload("1x3x32x32", lambda g: (torch.randn(1, 3, 32, 32, generator=g),)),
            Workload("1x3x224x224", lambda g: (torch.randn(1, 3, 224, 224, generator=g),)),
            Workload("16x3x224x224", lambda g: (torch.randn(16, 3, 224, 224, generator=g),), spec=True),
        ], aoti="export@aoti", frozen="frozen"),
        Model("dynamic_router", "DynamicRouter (scripted)", [
            Workload("1x256", lambda g: (torch.randn(1, d, generator=g),)),
            Workload("64x256", lambda g: (torch.randn(64, d, generator=g),)),
        ], frozen="frozen", notes=["no AOTInductor: torch.export cannot capture `if mask.any()` (see "
                                   "dynamic_router_masked)"]),
        Model("dynamic_router_masked", "MaskedRouter (the router rewritten for torch.export)", [
            Workload("1x256", lambda g: (torch.randn(1, d, generator=g),)),
            Workload("64x256", lambda g: (torch.randn(64, d, generator=g),)),
        ], eager=masked_eager, aoti="export@aoti"),
        Model("full_model", "FullModel, greedy (traced Encoder + scripted decoder)", [
            Workload("1x16", lambda g: (torch.randn(1, 16, FULL_D_MODEL, generator=g), True)),
            Workload("16x64", lambda g: (torch.randn(16, 64, FULL_D_MODEL, generator=g), True)),
        ], aoti="export_greedy@aoti"),
        Model("process_outputs", "process_outputs (scripted function), top_k=5", [
            Workload("1x10", lambda g: (torch.randn(1, classes, generator=g),
                                        torch.randint(0, classes, (1,), generator=g), 5)),
            Workload("256x10", lambda g: (torch.randn(256, classes, generator=g),
                                          torch.randint(0, classes, (256,), generator=g), 5)),
        ], aoti="export@aoti"),
    ]


# ---- statistics -------------------------------------------------------------------------------------------------
def stats(samples: list[float]) -> dict[str, Any]:
    """Median, quartiles and minimum in milliseconds; ``spread`` is the interquartile range over the median."""
    ms = sorted(s * 1e3 for s in samples)
    q = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else [ms[0]] * 3
    return {"median_ms": statistics.median(ms), "p25_ms": q[0], "p75_ms": q[2], "min_ms": ms[0], "n": len(ms),
            "spread": (q[2] - q[0]) / statistics.median(ms) if statistics.median(ms) > 0 else 0.0}


def time_python(fn: Callable[..., Any], args: tuple[Any, ...], policy: Policy) -> tuple[float, list[float]]:
    """(first call, samples) of ``fn(*args)`` under InferenceMode, with the C++ loops' warm-up and sample rules."""
    clock = time.perf_counter
    with torch.inference_mode():
        t = clock()
        fn(*args)
        first = clock() - t
        t0, i = clock(), 0
        while i < policy.warmup_calls or clock() - t0 < policy.warmup_seconds:
            fn(*args)
            i += 1
        samples: list[float] = []
        t0 = clock()
        while len(samples) < max(1, policy.min_calls) or clock() - t0 < policy.min_seconds:
            t = clock()
            fn(*args)
            samples.append(clock() - t)
    return first, samples


# ---- the machine ------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "os": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "libtorch": _core.libtorch_version(),
            "mkldnn": torch.backends.mkldnn.is_available(), "cuda": torch.cuda.is_available(),
            "runtimes": {n: (ok, d) for n, ok, d in _core.runtimes()}}


# ---- models -----------------------------------------------------------------------------------------------------
def _build(case_name: str):
    from ..authoring.registry import all_cases

    case = next(c for c in all_cases() if c.name == case_name)
    torch.manual_seed(case.seed)
    return case.build(case.seed)


def executorch_labels(m: Model, manifest: dict[str, Any], notes: list[str]) -> dict[str, str]:
    """mode -> runner label of the ExecuTorch programs lowered from the model's exported program, where the corpus
    has them (export --executorch) and this runner can run them; a note for each that is left out, and why."""
    if m.aoti is None:
        return {}
    program = m.aoti.split("@")[0]
    variants = {v["name"]: v for v in manifest.get("variants", [])}
    available = {n: (ok, d) for n, ok, d in _core.runtimes()}.get("executorch", (False, "unknown runtime"))
    out = {}
    for mode, suffix in EXECUTORCH_MODES.items():
        v = variants.get(program + suffix)
        if v is None:
            notes.append(f"{MODE_TITLES[mode]}: not in this corpus (torchconform export --executorch)")
        elif "file" not in v:
            notes.append(f"{MODE_TITLES[mode]}: {m.case} is not lowered ({v.get('error', '')[:200]})")
        elif not available[0]:
            notes.append(f"{MODE_TITLES[mode]}: not run: {available[1]}")
        else:
            out[mode] = f"{v['name']}@executorch"
    if out:
        notes.append("ExecuTorch runs on its own thread pool, sized by ExecuTorch to the machine (the wheel ships no "
                     "header to resize it): the threads column does not apply to its modes")
    return out


def _checked_torchscript(opened: Any, case: str, file: str) -> bytes:
    """A TorchScript artifact's bytes through the core's checked reader, refused when its code calls an operator that
    acts outside the process (``torch.jit.load`` runs a module's ``__setstate__``: checked before it)."""
    data = _core.read_case_file(opened, case, file)
    unreadable = _core.check_torchscript_code(data, f"{case}/{file}")
    if unreadable:
        raise CorpusInputError(unreadable)
    return data


def bench_models(corpus: Path, names: list[str], threads: list[int], policy: Policy, aoti_cache: str,
                 log: Callable[[str], None]) -> list[dict[str, Any]]:
    opened = _core.Corpus.open(str(corpus))
    in_corpus = {c.name: c for c in opened.cases}
    rows = []
    chosen = [m for m in _models() if not names or m.case in names]
    for m in chosen:
        spec = in_corpus.get(m.case)
        if spec is None or spec.error:
            state = "missing" if spec is None else "broken: " + spec.error
            raise CorpusInputError(f"{corpus}: case {m.case} is {state}; "
                                   f"bench times the built-in cases' artifacts (torchconform export)")
        log(f"[bench] {m.case}: building the eager model")
        built = _build(m.case)
        eager = m.eager(built)
        if isinstance(eager, torch.nn.Module):
            eager.eval()
        manifest = json.loads(spec.manifest_json)
        artifact = _checked_torchscript(opened, m.case, manifest["artifact"]["file"])
        labels = {"ts_cpp": "", "frozen_cpp": m.frozen, "aoti_cpp": m.aoti,
                  **executorch_labels(m, manifest, notes := list(m.notes))}
        for w in m.workloads:
            args = w.args(torch.Generator().manual_seed(7))
            for t in threads:
                torch.set_num_threads(t)
                row: dict[str, Any] = {"case": m.case, "model": m.title, "input": w.label, "threads": t,
                                       "spec_input": w.spec, "modes": {}, "errors": {}, "notes": notes}
                log(f"[bench] {m.case} {w.label} threads={t}")
                first, samples = time_python(eager, args, policy)
                row["modes"]["eager"] = {"load_s": None, "first_call_s": first, **stats(samples)}
                t0 = time.perf_counter()
                module = torch.jit.load(io.BytesIO(artifact))
                load = time.perf_counter() - t0
                first, samples = time_python(module, args, policy)
                row["modes"]["ts_python"] = {"load_s": load, "first_call_s": first, **stats(samples)}
                for mode, label in labels.items():
                    if label is None:
                        continue
                    try:
                        load, first, samples = _core.bench_artifact(opened, m.case, label, "forward", args, "cpu",
                                                                    t, aoti_cache, **policy.cpp())
                    except ValueError as e:  # (CorpusError included) ExecuTorch cannot run this input: the row says so
                        if mode not in EXECUTORCH_MODES:
                            raise
                        row["errors"][mode] = str(e)
                        notes.append(f"{MODE_TITLES[mode]}, {m.case} {w.label}: {str(e)[:300]}")
                        continue
                    row["modes"][mode] = {"load_s": load, "first_call_s": first, **stats(samples)}
                eager_ms = row["modes"]["eager"]["median_ms"]
                row["speedup"] = {k: eager_ms / v["median_ms"] for k, v in row["modes"].items() if k != "eager"}
                rows.append(row)
    torch.set_num_threads(os.cpu_count() or 1)
    return rows


def spec_recipe(corpus: Path, policy: Policy, log: Callable[[str], None]) -> dict[str, Any]:
    """The spec's profiling code as written: SimpleCNN eager vs the traced module, 16x3x224x224, grad enabled (the
    spec has no no_grad / inference_mode), 20 warm-up calls of each, then the mean of ``spec_iters`` calls."""
    log(f"[bench] the spec's recipe: 16x3x224x224, 20 warm-up, {policy.spec_iters} timed calls each")
    built = _build("simple_cnn")
    model = built.eager.eval()
    opened = _core.Corpus.open(str(corpus))
    case = next((c for c in opened.cases if c.name == "simple_cnn" and not c.error), None)
    if case is None:
        raise CorpusInputError(f"{corpus}: no readable simple_cnn case; the spec's recipe times the built-in one")
    artifact = _checked_torchscript(opened, "simple_cnn", json.loads(case.manifest_json)["artifact"]["file"])
    traced = torch.jit.load(io.BytesIO(artifact)).eval()
    x = torch.randn(16, 3, 224, 224, generator=torch.Generator().manual_seed(7))
    for _ in range(min(20, policy.spec_iters)):
        model(x)
        traced(x)

    def mean_ms(fn) -> float:
        start = time.perf_counter()
        for _ in range(policy.spec_iters):
            fn(x)
        return (time.perf_counter() - start) / policy.spec_iters * 1000

    python_ms, ts_ms = mean_ms(model), mean_ms(traced)
    return {"python_ms": python_ms, "ts_ms": ts_ms, "speedup": python_ms / ts_ms, "iters": policy.spec_iters,
            "threads": torch.get_num_threads()}


# ---- the suite's own speed ----------------------------------------------------------------------------------------
def _wall(cmd: list[str], timeout: float = 3600) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise SetupError(f"{cmd[0]} {' '.join(cmd[1:3])} ran past {timeout:.0f} s") from e
    return time.perf_counter() - t0, done


def breakdown(results) -> dict[str, float]:
    """Where an in-process verification's time went, summed over its results (loads counted once per artifact)."""
    loads = {(r.case, r.artifact): r.load_seconds for r in results}
    return {"calls": sum(r.call_seconds for r in results), "loads": sum(loads.values()),
            "read_and_hash": sum(r.read_seconds for r in results),
            "decode": sum(r.decode_seconds for r in results), "setup": sum(r.setup_seconds for r in results),
            "compare": sum(r.compare_seconds for r in results)}


def bench_suite(corpus: Path, rounds: int, aoti_cache: str, overhead_calls: int,
                log: Callable[[str], None]) -> dict[str, Any]:
    opened = _core.Corpus.open(str(corpus))
    quiet = lambda line: None  # noqa: E731
    log(f"[bench] suite: floor vs verify, {rounds} alternating rounds")
    floors, inproc, parts, opens = [], [], [], []
    # One unmeasured round first: the first loads of a process pay one-time costs (TorchScript's executors, the
    # allocator, page cache) that would otherwise land on whichever of floor and verify runs first. The verification
    # comes first and must pass: the floor and the Python loop below read the corpus without hashing it, so they run
    # only on a corpus the core's checked reader has just accepted whole.
    code, results, _ = verification.run([str(corpus), "--no-isolate", "--quiet"]
                                        + (["--aoti-cache", aoti_cache] if aoti_cache else []), out=quiet)
    if code != 0:
        first = next((r.line for r in results if r.verdict not in ("PASS", "XFAIL")), "")
        raise CorpusInputError(f"{corpus}: verify exited {code} ({first}); bench measures a corpus that passes")
    _core.measure_floor(opened, "cpu", 0, 2, aoti_cache)
    for _ in range(rounds):
        t0 = time.perf_counter()
        _core.Corpus.open(str(corpus))  # verify opens (parses, validates, hashes the manifests) the corpus too
        opens.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        floor = _core.measure_floor(opened, "cpu", 0, 2, aoti_cache)
        floors.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        code, results, _ = verification.run([str(corpus), "--no-isolate", "--quiet"]
                                            + (["--aoti-cache", aoti_cache] if aoti_cache else []), out=quiet)
        inproc.append(time.perf_counter() - t0)
        parts.append(breakdown(results))
        if code != 0:
            raise CorpusInputError(f"{corpus}: verify exited {code}; bench measures a corpus that passes")
    med = statistics.median
    i = inproc.index(sorted(inproc)[len(inproc) // 2])  # the breakdown of the median round
    split = {"open_corpus": med(opens), **parts[i]}
    split["other"] = inproc[i] - sum(split.values())

    log("[bench] suite: torchconform-run and the Python loop as processes")
    exe = verification.runner_executable()
    env_cache = ["--aoti-cache", aoti_cache] if aoti_cache else []
    # (Isolated runs fork, which this process cannot do safely once LibTorch's thread pools run: as commands.)
    cli = [_wall([exe, str(corpus), "--quiet", *env_cache])[0] for _ in range(rounds)]
    cli_flat = [_wall([exe, str(corpus), "--quiet", "--no-isolate", *env_cache])[0] for _ in range(rounds)]
    start = [_wall([exe, "--help"])[0] for _ in range(rounds)]
    loop_cmd = [sys.executable, "-m", "torchconform.tools.naive_loop", str(corpus), *env_cache]
    loops = []
    for _ in range(max(1, rounds // 2)):
        wall, done = _wall(loop_cmd)
        if done.returncode != 0:
            raise SetupError(f"the Python loop failed: {done.stderr.strip()[-400:]}")
        loops.append((wall, json.loads(done.stdout.strip().splitlines()[-1])))
    loop_wall = med(w for w, _ in loops)
    loop_info = loops[0][1]
    import_s = _wall([sys.executable, "-c", "import torch"])[0]

    log("[bench] suite: per-call overhead at batch 1")
    overhead = []
    for case, s in (("simple_cnn", "trace_example"), ("dynamic_router", "batch1")):
        if case in [c.name for c in opened.cases]:
            r = _core.measure_call_overhead(opened, case, s, "cpu", 1, overhead_calls, 9)
            overhead.append({"case": case, "input_set": s, "threads": 1, **r})
    return {
        "rounds": rounds, "floor": {"median_s": med(floors), **floor},
        "verify_in_process_s": med(inproc), "ratio_in_process": med(inproc) / med(floors),
        "breakdown_s": split, "cli_s": med(cli), "cli_no_isolate_s": med(cli_flat), "process_start_s": med(start),
        "ratio_cli": med(cli) / med(floors), "ratio_cli_no_isolate": med(cli_flat) / med(floors),
        "python_loop": {"wall_s": loop_wall, "in_loop_s": loop_info["seconds"], "import_torch_s": import_s,
                        "passed": loop_info["passed"], "failed": loop_info["failed"],
                        "unloadable": loop_info["unloadable"]},
        "ratio_cli_vs_python_loop": med(cli) / loop_wall,
        "call_overhead": overhead,
    }


def bench_compile(corpus: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from ..writing.aoti import compile_corpus

    with tempfile.TemporaryDirectory(prefix="torchconform-aoti-") as cache:
        out = {}
        for phase in ("cold", "warm"):
            log(f"[bench] AOTInductor compile, {phase} cache")
            t0 = time.perf_counter()
            recs = compile_corpus(corpus, devices=["cpu"], cache=Path(cache), log=lambda m: None)
            out[phase] = {"wall_s": time.perf_counter() - t0, "compiled": sum(r["status"] == "compiled" for r in recs),
                          "cached": sum(r["status"] == "cached" for r in recs),
                          "per_program_s": {f"{r['case']}:{r['variant']}": r["seconds"] for r in recs}}
    return out


# ---- output -----------------------------------------------------------------------------------------------------
def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.1f}" if v >= 0.1 else f"{v * 1e3:.2f}"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = ["# torchconform bench", "",
           f"Command: `{result['command']}`", "",
           f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; python {m['python']}, "
           f"torch {m['torch']} (MKLDNN {'on' if m['mkldnn'] else 'off'}), runner built against LibTorch "
           f"{m['libtorch']}; CUDA {'available' if m['cuda'] else 'not available'}.", "",
           f"Settings: {result['settings']}", ""]
    rows = result.get("models", [])
    if rows:
        present = [k for k in MODES if any(k in r["modes"] for r in rows)]
        out += ["## Latency per call (ms: median [p25-p75]) and speedup over Python eager", "",
                "| model | input | threads | " + " | ".join(MODE_TITLES[k] for k in present) + " | " +
                " | ".join(f"speedup {MODE_TITLES[k]}" for k in present if k != "eager") + " |",
                "|---|---|---|" + "---:|" * (2 * len(present) - 1)]
        for r in rows:
            cells = []
            for k in present:
                s = r["modes"].get(k)
                cells.append(("error" if k in r.get("errors", {}) else "-") if s is None else
                             f"{s['median_ms']:.3g} [{s['p25_ms']:.3g}-{s['p75_ms']:.3g}]")
            speed = [f"{r['speedup'][k]:.2f}x" if k in r["speedup"] else "-" for k in present if k != "eager"]
            out.append(f"| {r['case']} | {r['input']}{' (spec)' if r['spec_input'] else ''} | {r['threads']} | "
                       + " | ".join(cells + speed) + " |")
        out += ["", "## Load and first call (ms)", "",
                "| model | input | threads | " + " | ".join(f"{MODE_TITLES[k]} load / first" for k in present) + " |",
                "|---|---|---|" + "---:|" * len(present)]
        for r in rows:
            cells = []
            for k in present:
                s = r["modes"].get(k)
                cells.append("-" if s is None else f"{_ms(s['load_s'])} / {_ms(s['first_call_s'])}")
            out.append(f"| {r['case']} | {r['input']} | {r['threads']} | " + " | ".join(cells) + " |")
        notes = sorted({n for r in rows for n in r["notes"]})
        if notes:
            out += [""] + [f"- {n}" for n in notes]
        out.append("")
    spec = result.get("spec_recipe")
    if spec:
        ts = next((r for r in rows if r["spec_input"] and r["threads"] == spec["threads"]), None)
        verdict = ("inside" if 1.10 <= spec["speedup"] <= 1.30 else
                   "below" if spec["speedup"] < 1.10 else "above")
        out += ["## The spec's claim: \"10-30% speedup on CPU\" for TorchScript over Python", "",
                f"The spec's own recipe (SimpleCNN, 16x3x224x224, grad enabled, 20 warm-up calls, mean of "
                f"{spec['iters']}, {spec['threads']} threads): Python {spec['python_ms']:.2f} ms, TorchScript "
                f"{spec['ts_ms']:.2f} ms, speedup {spec['speedup']:.2f}x: **{verdict}** the claimed 1.10-1.30x."]
        if ts:
            out.append(f"Under InferenceMode (medians above): TorchScript from Python "
                       f"{ts['speedup']['ts_python']:.2f}x, from C++ {ts['speedup']['ts_cpp']:.2f}x"
                       + (f", AOTInductor {ts['speedup']['aoti_cpp']:.2f}x" if "aoti_cpp" in ts["speedup"] else "")
                       + ".")
        out.append("")
    s = result.get("suite")
    if s:
        b = s["breakdown_s"]
        f = s["floor"]
        out += ["## The suite's own speed", "",
                f"Floor (raw LibTorch in this process: load every artifact, {int(f['calls'])} calls over "
                f"{int(f['artifacts'])} artifacts, inputs decoded beforehand, nothing hashed or compared): "
                f"{s['floor']['median_s'] * 1e3:.0f} ms (median of {s['rounds']} rounds).", "",
                "| run | ms | x floor |", "|---|---:|---:|",
                f"| floor | {s['floor']['median_s'] * 1e3:.0f} | 1.00 |",
                f"| `verify` in process (`--no-isolate`) | {s['verify_in_process_s'] * 1e3:.0f} | "
                f"{s['ratio_in_process']:.2f} |",
                f"| `torchconform-run --no-isolate` as a command (process start included) | "
                f"{s['cli_no_isolate_s'] * 1e3:.0f} | {s['ratio_cli_no_isolate']:.2f} |",
                f"| `torchconform-run` as a command, one child process per case (the default) | "
                f"{s['cli_s'] * 1e3:.0f} | {s['ratio_cli']:.2f} |", "",
                "Where the in-process verification's time goes (median round): "
                + ", ".join(f"{k.replace('_', ' ')} {v * 1e3:.0f} ms" for k, v in b.items()) + ".",
                f"Process start of `torchconform-run` (loading LibTorch, `--help`): "
                f"{s['process_start_s'] * 1e3:.0f} ms.",
                ""]
        for o in s["call_overhead"]:
            out.append(f"- Per call, {o['case']}/{o['input_set']} (batch 1, {o['threads']} thread): raw "
                       f"`Module::forward` {o['raw_seconds'] * 1e6:.0f} us, the runner's checked call "
                       f"{o['runner_seconds'] * 1e6:.0f} us: **{(o['ratio'] - 1) * 100:+.1f}%** "
                       f"(median of {int(o['rounds'])} rounds of {int(o['calls'])} calls).")
        p = s["python_loop"]
        out += [f"- The obvious Python loop (`python -m torchconform.tools.naive_loop`, `torch.jit.load` + call + "
                f"`assert_close`): {p['wall_s']:.2f} s as a command ({p['in_loop_s']:.2f} s in the loop; "
                f"`import torch` alone {p['import_torch_s']:.2f} s); {p['passed']} checks passed, {p['failed']} "
                f"failed, {p['unloadable']} artifacts did not load. `torchconform-run` / loop = "
                f"**{s['ratio_cli_vs_python_loop']:.2f}**.", ""]
    c = result.get("compile")
    if c:
        out += ["## AOTInductor compile (cold vs warm cache)", "",
                f"Cold: {c['cold']['wall_s']:.1f} s ({c['cold']['compiled']} packages: "
                + ", ".join(f"{k} {v:.1f} s" for k, v in c["cold"]["per_program_s"].items())
                + f"). Warm: {c['warm']['wall_s']:.2f} s ({c['warm']['cached']} from the cache, "
                f"{c['warm']['compiled']} compiled).", ""]
    if result.get("plot"):
        out += [f"![speedups]({result['plot']})", ""]
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    threads = sorted({r["threads"] for r in rows})
    modes = [k for k in MODES[1:] if any(k in r["speedup"] for r in rows)]
    fig, axes = plt.subplots(len(threads), 1, figsize=(12, 3.6 * len(threads)), squeeze=False)
    for ax, t in zip(axes[:, 0], threads):
        sel = [r for r in rows if r["threads"] == t]
        width = 0.8 / len(modes)
        for j, k in enumerate(modes):
            xs = [i + (j - (len(modes) - 1) / 2) * width for i in range(len(sel))]
            ax.bar(xs, [r["speedup"].get(k, 0) for r in sel], width, label=MODE_TITLES[k])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhspan(1.10, 1.30, color="grey", alpha=0.2, label="spec's claim (1.10-1.30x)")
        ax.set_xticks(range(len(sel)))
        ax.set_xticklabels([f"{r['case']}\n{r['input']}" for r in sel], fontsize=7, rotation=20, ha="right")
        ax.set_ylabel("speedup over Python eager")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}")
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def run(corpus: Path, out: Path, *, models: list[str], threads: list[int], policy: Policy, suite: bool,
        compile_: bool, spec: bool, rounds: int, overhead_calls: int, aoti_cache: str, command: str,
        log: Callable[[str], None]) -> dict[str, Any]:
    known = [m.case for m in _models()]
    unknown = [n for n in models if n not in known]
    if unknown:
        raise UsageError(f"--model {', '.join(unknown)}: no such model (known: {', '.join(known)})")
    if any(t < 1 for t in threads):
        raise UsageError("--threads takes positive integers")
    out.mkdir(parents=True, exist_ok=True)
    from ..writing.aoti import compile_corpus

    compile_corpus(corpus, devices=["cpu"], cache=Path(aoti_cache) if aoti_cache else None, log=log)
    result: dict[str, Any] = {
        "command": command, "machine": machine(),
        "settings": f"InferenceMode (all modes but the spec's recipe), TensorExpr fuser off (the runner's policy), "
                    f"warm-up >= {policy.warmup_calls} calls and >= {policy.warmup_seconds} s, then >= "
                    f"{policy.min_calls} timed calls and >= {policy.min_seconds} s; threads {threads} "
                    f"(torch.set_num_threads, shared by Python and the C++ runner in this process)"}
    torch._C._jit_set_texpr_fuser_enabled(False)  # the runner's policy, for the Python modes too
    result["models"] = bench_models(corpus, models, threads, policy, aoti_cache, log) if threads else []
    if spec and threads and (not models or "simple_cnn" in models):
        result["spec_recipe"] = spec_recipe(corpus, policy, log)
    if suite:
        result["suite"] = bench_suite(corpus, rounds, aoti_cache, overhead_calls, log)
    if compile_:
        result["compile"] = bench_compile(corpus, log)
    if not result["models"]:  # (the plot is of the model rows: --skip-models, --threads 0)
        result["no_plot"] = "no model rows to plot (the per-model benchmark did not run)"
    elif plot(result["models"], out / "bench.png"):
        result["plot"] = "bench.png"
    else:
        result["no_plot"] = "matplotlib is not installed"
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "bench.md").write_text(markdown(result))
    return result
