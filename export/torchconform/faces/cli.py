"""The ``torchconform`` command: export a corpus (Python), verify it and report on it (the C++ core, via _core)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import COULD_NOT_CHECK, SetupError, UsageError, exit_status
from ..text import json_text, terminal


def _stderr(quiet: bool) -> Callable[[str], None] | None:
    return None if quiet else (lambda line: print(line, file=sys.stderr, flush=True))


def _export(args: argparse.Namespace) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0" and not args._in_process:
        # TorchScript writes a module's __constants__ in set order, which follows Python's string hash seed; with
        # the seed fixed, exporting twice gives the same artifact bytes (docs/corpus-format.md).
        os.execve(sys.executable, [sys.executable, "-m", "torchconform", *sys.argv[1:]],
                  {**os.environ, "PYTHONHASHSEED": "0"})
    from ..authoring.case import CaseError
    from ..authoring.registry import load_user_cases, select
    from ..writing.coverage import Coverage, regressions_dirs
    from ..writing.writer import write_corpus

    try:
        # --cases: the user's own declarations instead of the built-in cases (--case then selects among them).
        declared = [c for spec in args.cases for c in load_user_cases(spec)] if args.cases else None
        cases = select(args.case, declared)
        if args.record_submodules:  # every case with a TorchScript module (script functions and programs have none)
            cases = [dataclasses.replace(c, record_submodules=True) if c.mode in ("trace", "script", "hybrid") else c
                     for c in cases]
        coverage = Coverage(bounds=not args.no_bound_sets, budget_mb=args.bound_budget_mb,
                            sensitivity=args.sensitivity,
                            regressions=tuple(args.regressions or regressions_dirs(args.cases)))
        failed = write_corpus(args.out, cases, force=args.force, keep_going=args.keep_going, envelope=args.envelope,
                              executorch=args.executorch, bundled=args.bundled, coverage=coverage,
                              size_budget_mb=args.size_budget_mb,
                              log=_stderr(args.quiet) or (lambda m: None))
    except (CaseError, FileExistsError, ValueError) as e:
        print(f"torchconform export: error: {terminal(e)}", file=sys.stderr)
        return exit_status(e)
    if failed:  # --keep-going: the corpus holds the others; the run still fails
        print(f"torchconform export: error: {len(failed)} cases failed and are not in {args.out}:\n  "
              + "\n  ".join(failed), file=sys.stderr)
        return COULD_NOT_CHECK
    return 0


def _fuzz(args: argparse.Namespace) -> int:
    from .. import _core
    from ..authoring.case import CaseError
    from ..authoring.registry import load_user_cases, select
    from ..tools import fuzz
    from ..writing.coverage import regressions_dirs

    if args.examples < 1 or not args.budget > 0 or not args.input_budget_mb > 0:
        print("torchconform fuzz: --examples, --budget and --input-budget-mb must be > 0", file=sys.stderr)
        return COULD_NOT_CHECK
    try:
        declared = [c for spec in args.cases for c in load_user_cases(spec)] if args.cases else None
        cases = select(args.case, declared)
        regressions = args.regressions or (regressions_dirs(args.cases) or [None])[0]
        aoti_cache = str(args.aoti_cache) if args.aoti_cache else ""
        return fuzz.run(args.corpus, cases, artifacts=args.artifact, examples=args.examples, budget_s=args.budget,
                        seed=args.seed if args.seed is not None else fuzz.default_seed(), device=args.device,
                        libraries=[str(Path(p).resolve()) for p in args.load_library], aoti_cache=aoti_cache,
                        allow_side_effects=args.allow_side_effects, regressions=regressions,
                        save=not args.no_save, budget_mb=args.input_budget_mb,
                        log=_stderr(args.quiet) or (lambda m: None))
    except (CaseError, _core.CorpusError, _core.UsageError, FileNotFoundError) as e:
        print(f"torchconform fuzz: error: {terminal(e)}", file=sys.stderr)
        return exit_status(e)


def _compile(args: argparse.Namespace) -> int:
    from .. import _core
    from ..writing.aoti import compile_corpus

    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu", "cuda"]}.get(args.device)
    if devices is None:
        print(f"torchconform compile: --device must be cpu, cuda or all, got {args.device!r}", file=sys.stderr)
        return COULD_NOT_CHECK
    import torch

    if args.device == "all" and not torch.cuda.is_available():
        devices = ["cpu"]
        print("torchconform compile: skipped device cuda: CUDA is not available to this torch", file=sys.stderr)
    try:
        for path in args.load_library:
            try:
                torch.ops.load_library(path)
            except (OSError, RuntimeError) as e:
                raise SetupError(f"--load-library {path}: cannot load it: {e}") from e
        for module in args.imports:
            try:
                importlib.import_module(module)
            except Exception as e:  # noqa: BLE001 - whatever the module raises: say which and why
                raise SetupError(f"--import {module}: {type(e).__name__}: {e}") from e
        if args.jobs < 1:
            raise UsageError(f"--jobs expects an integer >= 1, got {args.jobs}")
        records = compile_corpus(args.corpus, devices=devices, cache=args.aoti_cache, cases=args.case or [],
                                 force=args.force, workers=args.jobs, libraries=args.load_library,
                                 imports=args.imports, allow_side_effects=args.allow_side_effects,
                                 log=_stderr(args.quiet) or (lambda m: None))
    except (_core.CorpusError, _core.UsageError, ValueError, OSError) as e:
        print(f"torchconform compile: error: {terminal(e)}", file=sys.stderr)
        return exit_status(e)
    compiled = [r for r in records if r["status"] == "compiled"]
    print(f"{len(records)} AOTInductor packages: {len(compiled)} compiled "
          f"({sum(r['seconds'] for r in compiled):.1f} s), {len(records) - len(compiled)} from the cache")
    return 0


def _verify(rest: list[str]) -> int:
    from .. import _core
    from ..verification import run

    if {"-h", "--help"} & set(rest):
        print(_core.verify_usage("torchconform verify [CORPUS, default golden]"), end="")
        return 0
    try:
        # The C++ option table parses the arguments: the same values as torchconform-run, the same messages.
        code, _, _ = run(rest, default_corpus="golden", out=lambda line: print(line, flush=True),
                         progress=_stderr(False))
    except _core.UsageError as e:
        print(f"torchconform verify: {terminal(e)}", file=sys.stderr)
        return exit_status(e)
    except _core.CorpusError as e:
        print(f"torchconform verify: error: {terminal(e)}", file=sys.stderr)
        return exit_status(e)
    return code


def _report(args: argparse.Namespace) -> int:
    from .. import _core
    from .report import markdown_report

    try:
        text, code = markdown_report(args.corpus, results=args.results, device=args.device, cases=args.case or [],
                                     progress=_stderr(args.quiet), aoti_cache=str(args.aoti_cache or ""),
                                     json_out=args.json)
    except (_core.CorpusError, _core.UsageError, OSError, ValueError) as e:
        print(f"torchconform report: error: {terminal(e)}", file=sys.stderr)
        return exit_status(e)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    return code


def _bundle_check(args: argparse.Namespace) -> int:
    from .. import _core, verification
    from ..tools.bundled import run

    try:
        return run(args.corpus, results=args.results, runner=args.runner or verification.runner_executable(),
                   extra=["--aoti-cache", str(args.aoti_cache)] if args.aoti_cache else [], json_out=args.json,
                   out=print)
    except (_core.CorpusError, OSError, ValueError) as e:
        print(f"torchconform bundle-check: error: {terminal(e)}", file=sys.stderr)
        return exit_status(e)


def _bench(args: argparse.Namespace) -> int:
    from .. import _core
    from ..tools.bench import QUICK, Policy, run

    try:
        threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, os.cpu_count() or 1})
    except ValueError:
        print(f"torchconform bench: --threads takes comma-separated integers, got {args.threads!r}", file=sys.stderr)
        return COULD_NOT_CHECK
    command = "torchconform " + shlex.join(args._argv)
    try:
        result = run(args.corpus, args.out, models=args.model or [], threads=[] if args.skip_models else threads,
                     policy=QUICK if args.quick else Policy(), suite=not args.skip_suite,
                     compile_=not args.skip_compile, spec=not args.skip_spec, rounds=args.rounds,
                     overhead_calls=args.overhead_calls, aoti_cache=str(args.aoti_cache or ""), command=command,
                     log=_stderr(args.quiet) or (lambda m: None))
    except (_core.CorpusError, _core.UsageError, ValueError, OSError) as e:
        print(f"torchconform bench: error: {terminal(e)}", file=sys.stderr)
        return exit_status(e)
    print((args.out / "bench.md").read_text(), end="")
    print(f"\nwritten: {args.out / 'bench.md'}, {args.out / 'bench.json'}"
          + (f", {args.out / result['plot']}" if result.get("plot") else f" (no plot: {result.get('no_plot', '')})"))
    return 0


def _compat(args: argparse.Namespace) -> int:
    from ..tools.compat import main_entry

    try:
        result, code = main_entry(args.corpus or [], args.runtime or [], args.out, args.reexport, args.aoti_cache,
                                  args.timeout, args._argv, _stderr(args.quiet) or (lambda m: None))
    except (ValueError, OSError) as e:
        print(f"torchconform compat: error: {terminal(e)}", file=sys.stderr)
        return exit_status(e)
    print((args.out / "compat.md").read_text(), end="")
    print(f"\nwritten: {args.out / 'compat.md'}, {args.out / 'compat.json'}")
    return code


def _upgrade(args: argparse.Namespace) -> int:
    from .. import _core
    from ..tools.upgrade import Plan, run

    log = _stderr(args.quiet) or (lambda m: None)
    try:
        if not args.to:
            raise UsageError("give --to VERSION (repeatable): the torch version(s) to move to")
        if args.corpus and not args.corpus.is_dir():
            raise UsageError(f"--corpus {args.corpus}: not a directory")
        for spec in args.cases or []:
            if spec.endswith(".py") and not Path(spec).is_file():
                raise UsageError(f"--cases {spec}: no such file")
        if not (args.cases or args.builtin or args.corpus or args.merge):
            raise UsageError("give the models: --cases FILE_OR_MODULE, --corpus DIR (exported with --from), or "
                             "--builtin")
        extras = list(args.with_ or [])
        for req in args.requirements or []:
            try:
                extras += [line.split("#")[0].strip() for line in req.read_text().splitlines()
                           if line.split("#")[0].strip()]
            except OSError as e:
                raise UsageError(f"--requirements {req}: {e}") from e
        if any(x.split("=")[0].split("<")[0].split(">")[0].strip().lower() == "torch" for x in extras):
            raise UsageError("--with/--requirements name torch: the versions come from --from and --to")
        env_specs = {}
        for spec in args.env or []:
            version, sep, rest = spec.partition("=")
            if not sep or not version or not rest:
                raise UsageError(f"--env {spec!r}: expected VERSION=PYTHON[:RUNNER]")
            env_specs[version] = rest
        for version in [args.from_version, *args.to]:
            if not re.fullmatch(r"\d+\.\d+\.\d+([a-z0-9.+]*)?", version):
                raise UsageError(f"torch version {version!r}: expected an exact version such as 2.15.0 (never a "
                                 "range: it would pull a multi-GB CUDA build)")
        if args.jobs < 1:
            raise UsageError(f"--jobs expects an integer >= 1, got {args.jobs}")
        plan = Plan(args.from_version, args.to, cases=args.cases or [], builtin=args.builtin, corpus=args.corpus,
                    extras=extras, env_specs=env_specs, cache=args.cache, aoti_cache=args.aoti_cache, out=args.out,
                    timeout=args.timeout, jobs=args.jobs, tool=args.env_tool, reuse=not args.no_reuse)
        return run(plan, cells=args.cell, list_only=args.list_cells, merge_from=args.merge, waivers=args.waivers,
                   log=log)
    except (_core.CorpusError, _core.UsageError, ValueError, OSError) as e:
        print(f"torchconform upgrade: error: {terminal(e)}", file=sys.stderr)
        return exit_status(e)


def _tolerances(args: argparse.Namespace) -> int:
    from .. import verification
    from ..tools.tolerances import render

    if not args.margin >= 1:
        print(f"torchconform tolerances: --margin must be >= 1, got {args.margin}", file=sys.stderr)
        return COULD_NOT_CHECK
    if args.results:
        try:
            report = json.loads(args.results.read_text())
        except (OSError, ValueError) as e:
            print(f"torchconform tolerances: --results {args.results}: {terminal(e)}", file=sys.stderr)
            return COULD_NOT_CHECK
    else:
        run_args = [str(args.corpus), "--device", args.device, "--quiet"]
        run_args += [a for g in args.case or [] for a in ("--case", g)]
        run_args += ["--aoti-cache", str(args.aoti_cache)] if args.aoti_cache else []
        try:
            _, _, report = verification.run(run_args)
        except ValueError as e:  # the core's UsageError / CorpusError
            print(f"torchconform tolerances: {terminal(e)}", file=sys.stderr)
            return exit_status(e)
    print(render(report, args.margin, args.suggest), end="")
    return 0


def _localize(args: argparse.Namespace) -> int:
    from ..tools.localize_export import localize, render

    log = _stderr(args.quiet) or (lambda m: None)
    try:
        result = localize(args.corpus, args.case, variant=args.program, sets=args.set, aoti=args.aoti,
                          method=args.method, device=args.device, aoti_cache=args.aoti_cache, log=log)
    except (ValueError, RuntimeError, OSError) as e:  # the core's CorpusError / UsageError, torch's errors too
        print(f"torchconform localize: error: {terminal(e)}", file=sys.stderr)
        return exit_status(e)
    print(render(result), end="")
    if args.json:
        args.json.write_text(json_text(result, indent=1) + "\n")
    if any("not_run" in s for s in result["sets"]):  # a set that could not be checked: not a clean answer
        return COULD_NOT_CHECK
    diverged = any(s.get(k) for s in result["sets"] for k in ("fx_first_divergence", "aoti_first_divergence"))
    return 1 if diverged else 0


def main(argv: list[str] | None = None) -> int:
    """The `torchconform` command. A reader that stops reading (`torchconform verify --list | head`) ends the command
    quietly, as it ends any Unix tool, instead of a BrokenPipeError traceback."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # stdout is gone: point it at /dev/null so that the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the closed pipe


CACHE_HELP = ("AOTInductor package cache (default: $TORCHCONFORM_AOTI_CACHE, else "
              "$XDG_CACHE_HOME/torchconform/aoti, else ~/.cache/torchconform/aoti; this user's alone: created "
              "0700, refused when others could write into it)")


def _add_export(sub: Any) -> None:
    from ..writing.coverage import DEFAULT_BUDGET_MB, DEFAULT_SENSITIVITY
    from ..writing.writer import DEFAULT_SIZE_BUDGET_MB

    exp = sub.add_parser("export", help="export the cases and write a golden corpus")
    exp.add_argument("--out", type=Path, default=Path("golden"), help="corpus directory (default: golden)")
    exp.add_argument("--cases", action="append", metavar="MODULE_OR_FILE",
                     help="export the cases declared in this module (mypkg.my_cases) or file (my_cases.py) instead "
                          "of the built-in ones (repeatable); see examples/README.md")
    exp.add_argument("--case", action="append", metavar="GLOB", help="only cases matching GLOB (repeatable)")
    exp.add_argument("--force", action="store_true", help="replace an existing corpus")
    exp.add_argument("--keep-going", action="store_true",
                     help="when some cases fail, write the corpus with the others (the export still exits 2)")
    exp.add_argument("--record-submodules", action="store_true",
                     help="also record every submodule's inputs and output per input set (cases with a TorchScript "
                          "module), so that the runner can say which submodule a mismatch starts in (docs/localize.md)")
    exp.add_argument("--envelope", action="store_true",
                     help="also measure each golden's noise envelope (the artifact re-run under this CPU's lower "
                          "ATEN_CPU_CAPABILITY levels and with all cores), which the runner reports results against "
                          "(docs/localize.md)")
    exp.add_argument("--executorch", action="store_true",
                     help="also lower every exported program to ExecuTorch (.pte: CPU kernels, and the XNNPACK "
                          "delegate) as variants the runner's ExecuTorch runtime runs; needs the executorch package "
                          "(ci/executorch.sh)")
    exp.add_argument("--bundled", action="store_true",
                     help="--executorch, and each ExecuTorch program also written as an ExecuTorch BundledProgram "
                          "(.bpte: the program with the case's input sets and goldens as ExecuTorch's own test cases; "
                          "`torchconform bundle-check` runs ExecuTorch's check on them; docs/executorch.md)")
    exp.add_argument("--no-bound-sets", action="store_true",
                     help="do not generate input sets at the bounds of the programs' dynamic dimensions and the trace "
                          "example at batch 1 (docs/coverage.md)")
    exp.add_argument("--bound-budget-mb", type=float, default=DEFAULT_BUDGET_MB, metavar="MB",
                     help="the most one generated set's inputs and golden may take; larger ones are left out and "
                          f"the manifest says so (default: {DEFAULT_BUDGET_MB:g})")
    exp.add_argument("--sensitivity", type=float, default=DEFAULT_SENSITIVITY, metavar="R",
                     help="warn when a golden's tolerance cannot detect a relative error of R on most of its "
                          f"elements (default: {DEFAULT_SENSITIVITY:g}, i.e. 1%%)")
    exp.add_argument("--size-budget-mb", type=float, default=DEFAULT_SIZE_BUDGET_MB, metavar="MB",
                     help="warn when the corpus takes more (default: %(default)g)")
    exp.add_argument("--regressions", action="append", type=Path, metavar="DIR",
                     help="the input sets torchconform fuzz saved (DIR/<case>/<set>.pt), added to their cases "
                          "(repeatable; default: beside each --cases file, my_cases.py -> my_cases.regressions/, or "
                          "the built-in cases' own)")
    exp.add_argument("--quiet", action="store_true", help="no progress lines")
    exp.set_defaults(run=_export)


def _add_compile(sub: Any) -> None:
    com = sub.add_parser("compile", help="compile the corpus's torch.export programs into AOTInductor packages for "
                                         "the C++ runner (cached by the program's graph, weights and aoti_options, "
                                         "the torch version and the device)")
    com.add_argument("corpus", nargs="?", type=Path, default=Path("golden"))
    com.add_argument("--device", default="cpu", help="cpu, cuda or all (default: cpu)")
    com.add_argument("--case", action="append", metavar="GLOB", help="only cases matching GLOB (repeatable)")
    com.add_argument("--aoti-cache", type=Path, help=CACHE_HELP)
    com.add_argument("--force", action="store_true", help="compile again even when the cache has the package")
    com.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="compile N packages at a time, each in its own interpreter (default: 1)")
    com.add_argument("--load-library", action="append", default=[], metavar="PATH",
                     help="load an operator library first (torch.ops.load_library; repeatable), for programs that "
                          "call operators outside LibTorch")
    com.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                     help="import a Python module first (repeatable), e.g. torchvision for its operators, or the "
                          "module that registers a pytree type the programs use")
    com.add_argument("--allow-side-effects", action="store_true",
                     help="compile programs that call operators acting outside the process (torch.from_file, "
                          "torch.save, print): refused by default, since their package would run them wherever the "
                          "corpus is verified; only for a corpus whose authors you trust")
    com.add_argument("--quiet", action="store_true", help="no progress lines")
    com.set_defaults(run=_compile)


def _add_fuzz(sub: Any) -> None:
    from ..tools.fuzz import DEFAULT_BUDGET_S, DEFAULT_EXAMPLES
    from ..writing.coverage import DEFAULT_BUDGET_MB

    fuz = sub.add_parser("fuzz", help="differential search inside each artifact's guards: eager Python against the C++ "
                                      "runtimes, live; a divergence is shrunk and saved as an input set of its case "
                                      "(docs/coverage.md)")
    fuz.add_argument("corpus", nargs="?", type=Path, default=Path("golden"),
                     help="the corpus exported from the cases (default: golden)")
    fuz.add_argument("--cases", action="append", metavar="MODULE_OR_FILE",
                     help="the cases the corpus was exported from (repeatable; default: the built-in cases)")
    fuz.add_argument("--case", action="append", metavar="GLOB", help="only cases matching GLOB (repeatable)")
    fuz.add_argument("--artifact", action="append", default=[], metavar="GLOB",
                     help="only artifacts matching GLOB, as results name them: 'case', 'case:export@aoti' "
                          "(repeatable)")
    fuz.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, metavar="N",
                     help=f"inputs per artifact at most (default: {DEFAULT_EXAMPLES})")
    fuz.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                     help=f"time for the whole search, shared among the artifacts (default: {DEFAULT_BUDGET_S:g}); "
                          "shrinking a divergence found in time goes on past it")
    fuz.add_argument("--seed", type=int, help="the search's seed (default: a random one, printed: give it to repeat "
                                             "a run)")
    fuz.add_argument("--device", default="cpu", help="the device the runtimes run on (default: cpu)")
    fuz.add_argument("--load-library", action="append", default=[], metavar="PATH",
                     help="an operator library the runtimes load (repeatable), as torchconform-run --load-library")
    fuz.add_argument("--aoti-cache", type=Path, help=CACHE_HELP)
    fuz.add_argument("--allow-side-effects", action="store_true",
                     help="run TorchScript artifacts that act outside the process (as torchconform-run)")
    fuz.add_argument("--input-budget-mb", type=float, default=DEFAULT_BUDGET_MB, metavar="MB",
                     help=f"the most one drawn input may take (default: {DEFAULT_BUDGET_MB:g})")
    fuz.add_argument("--regressions", type=Path, metavar="DIR",
                     help="where divergences are saved, DIR/<case>/<set>.pt (default: where torchconform export "
                          "reads them: beside the --cases file, or the built-in cases' own)")
    fuz.add_argument("--no-save", action="store_true", help="report divergences without saving them")
    fuz.add_argument("--quiet", action="store_true", help="no progress lines")
    fuz.set_defaults(run=_fuzz)


def _add_verify(sub: Any) -> None:
    # (main() hands `verify`'s arguments to the C++ option table before argparse sees them; listed for --help.)
    sub.add_parser("verify", add_help=False,
                   help="verify a corpus with the C++ runner (torchconform-run's options, output and exit codes: "
                        "0 pass, 1 mismatch, 2 error/crash/timeout/empty run, 3 expected failures only; --help lists "
                        "them)")


def _add_report(sub: Any) -> None:
    rep = sub.add_parser("report", help="a Markdown report of a corpus and its verification")
    rep.add_argument("corpus", nargs="?", type=Path, default=Path("golden"))
    rep.add_argument("--results", type=Path, help="use this JSON report (from verify --json) instead of verifying")
    rep.add_argument("--device", default="all", help="devices to verify on when no --results (default: all)")
    rep.add_argument("--case", action="append", metavar="GLOB", help="only cases matching GLOB (repeatable)")
    rep.add_argument("--out", type=Path, help="write the report here instead of standard output")
    rep.add_argument("--aoti-cache", type=Path, help=CACHE_HELP)
    rep.add_argument("--json", type=Path, help="also write the TorchScript -> torch.export migration table as JSON")
    rep.add_argument("--quiet", action="store_true", help="no progress lines")
    rep.set_defaults(run=_report)


def _add_bundle_check(sub: Any) -> None:
    bun = sub.add_parser("bundle-check", help="ExecuTorch's own bundled-program check on every .bpte of a corpus "
                                              "(export --bundled), set against the C++ runner's verdicts: they must "
                                              "agree (exit 0), else exit 1")
    bun.add_argument("corpus", nargs="?", type=Path, default=Path("golden"))
    bun.add_argument("--results", type=Path, help="the runner's verdicts from this JSON report (torchconform-run "
                                                  "--json) instead of running it")
    bun.add_argument("--runner", help="the torchconform-run to run (default: the one installed beside this Python)")
    bun.add_argument("--json", type=Path, help="also write the comparison as JSON")
    bun.add_argument("--aoti-cache", type=Path, help=CACHE_HELP)
    bun.set_defaults(run=_bundle_check)


def _add_tolerances(sub: Any) -> None:
    tol = sub.add_parser("tolerances", help="the minimum tolerance each output needed (measured by the runner), and "
                                            "with --suggest per-output tolerances that would pass with a margin")
    tol.add_argument("corpus", nargs="?", type=Path, default=Path("golden"))
    tol.add_argument("--results", type=Path, help="use this JSON report (from verify --json) instead of verifying")
    tol.add_argument("--device", default="all", help="devices to verify on when no --results (default: all)")
    tol.add_argument("--case", action="append", metavar="GLOB", help="only cases matching GLOB (repeatable)")
    tol.add_argument("--aoti-cache", type=Path, help=CACHE_HELP)
    tol.add_argument("--suggest", action="store_true", help="propose per-output tolerances (nothing is written)")
    tol.add_argument("--margin", type=float, default=2.0, help="factor over the measured need (default: 2)")
    tol.set_defaults(run=_tolerances)


def _add_localize(sub: Any) -> None:
    loc = sub.add_parser("localize", help="where a torch.export program starts to differ from the eager model: "
                                           "its graph node by node (fx.Interpreter), or with --aoti its "
                                           "AOTInductor package, against the recorded submodule outputs "
                                           "(docs/localize.md); exit 0 nothing diverges, 1 something diverges, 2 "
                                           "bad input or a set that cannot be run on the program")
    loc.add_argument("corpus", type=Path)
    loc.add_argument("--case", required=True, help="the case (exported with --record-submodules)")
    loc.add_argument("--program", help="the exported program variant (default: the case's first)")
    loc.add_argument("--set", action="append", metavar="NAME", help="only this input set (repeatable)")
    loc.add_argument("--aoti", action="store_true", help="also compile and run debug packages from C++ (costs "
                                                         "AOTInductor compiles per set)")
    loc.add_argument("--method", choices=["mark", "bisect"], default="mark",
                     help="--aoti: mark every submodule output as an extra output (default; bisects by itself when "
                          "that makes the mismatch disappear) or bisect over graph prefixes")
    loc.add_argument("--device", default="cpu", help="device for --aoti (default: cpu)")
    loc.add_argument("--aoti-cache", type=Path, help=CACHE_HELP)
    loc.add_argument("--json", type=Path, help="also write every check as JSON")
    loc.add_argument("--quiet", action="store_true", help="no progress lines")
    loc.set_defaults(run=_localize)


def _add_bench(sub: Any) -> None:
    ben = sub.add_parser("bench", help="benchmarks: Python eager vs TorchScript (Python, C++) vs AOTInductor per "
                                       "model, and the suite's own speed (docs/bench.md)")
    ben.add_argument("corpus", nargs="?", type=Path, default=Path("golden"),
                     help="a corpus of the built-in cases (default: golden)")
    ben.add_argument("--out", type=Path, default=Path("build/bench"), help="where bench.md/json/png go "
                                                                           "(default: build/bench)")
    ben.add_argument("--model", action="append", metavar="CASE", help="only this model (repeatable)")
    ben.add_argument("--threads", help="comma-separated thread counts (default: 1 and the core count)")
    ben.add_argument("--quick", action="store_true", help="few calls per measurement (a smoke run, not numbers "
                                                         "to quote)")
    ben.add_argument("--rounds", type=int, default=5, help="rounds of the suite-speed measurements (default: 5)")
    ben.add_argument("--overhead-calls", type=int, default=200, help="calls per round of the per-call overhead "
                                                                     "measurement (default: 200)")
    ben.add_argument("--skip-models", action="store_true", help="no per-model latency measurements")
    ben.add_argument("--skip-suite", action="store_true", help="no suite-speed measurements")
    ben.add_argument("--skip-compile", action="store_true", help="no cold/warm AOTInductor compile timing "
                                                                 "(the cold compile takes minutes)")
    ben.add_argument("--skip-spec", action="store_true", help="do not re-run the spec's profiling recipe")
    ben.add_argument("--aoti-cache", type=Path, help=CACHE_HELP)
    ben.add_argument("--quiet", action="store_true", help="no progress lines")
    ben.set_defaults(run=_bench)


def _add_compat(sub: Any) -> None:
    cpt = sub.add_parser("compat", help="verify corpora made with one PyTorch on other PyTorch versions, from "
                                        "Python and C++, and compare re-exports (docs/compat.md)")
    cpt.add_argument("--corpus", action="append", metavar="NAME:DIR",
                     help="a corpus and a label for it (repeatable; the first is the re-exports' reference)")
    cpt.add_argument("--runtime", action="append", metavar="NAME:PYTHON[:RUNNER]",
                     help="a PyTorch version: an interpreter with that torch and, for the C++ column, a "
                          "torchconform-run built against its LibTorch (repeatable)")
    cpt.add_argument("--reexport", action="store_true", help="also export the built-in cases with each runtime's "
                                                             "torch, verify those corpora everywhere and compare "
                                                             "them with the first corpus")
    cpt.add_argument("--out", type=Path, default=Path("build/compat"), help="where compat.md/json and the "
                                                                            "re-exports go (default: build/compat)")
    cpt.add_argument("--aoti-cache", type=Path, help=CACHE_HELP)
    cpt.add_argument("--timeout", type=float, default=1800, help="seconds per process (default: 1800)")
    cpt.add_argument("--quiet", action="store_true", help="no progress lines")
    cpt.set_defaults(run=_compat)


def _add_upgrade(sub: Any) -> None:
    upg = sub.add_parser("upgrade", help="may these models move from one PyTorch to another? A verdict per model "
                                          "(PASS, DRIFT, REBUILD-REQUIRED, ROLLBACK-UNSAFE, BREAK) from environments "
                                          "and runners per version (docs/upgrade.md); exit 0 all PASS/DRIFT, 1 a "
                                          "break, 2 not checked")
    upg.add_argument("--cases", action="append", metavar="MODULE_OR_FILE",
                     help="the models: the cases declared in this file or module (repeatable)")
    upg.add_argument("--corpus", type=Path, help="what you ship: a corpus exported with --from (with --cases it is "
                                                 "used instead of exporting with --from)")
    upg.add_argument("--builtin", action="store_true", help="torchconform's own cases (ci/upgrade.sh)")
    upg.add_argument("--from", dest="from_version", required=True, metavar="VERSION",
                     help="the torch version you run today, exactly (2.13.0)")
    upg.add_argument("--to", action="append", metavar="VERSION", help="a torch version to move to (repeatable)")
    upg.add_argument("--with", dest="with_", action="append", metavar="REQUIREMENT",
                     help="an extra requirement for every environment, e.g. torchvision==0.30.0 (repeatable)")
    upg.add_argument("--requirements", action="append", type=Path, metavar="FILE",
                     help="extra requirements for every environment, one per line (repeatable)")
    upg.add_argument("--env", action="append", metavar="VERSION=PYTHON[:RUNNER]",
                     help="use an environment you have for VERSION (and its torchconform-run) instead of making one")
    upg.add_argument("--env-tool", choices=("auto", "uv", "pip"), default="auto",
                     help="how environments are made: uv (its cache hard-links torch), venv + pip, or uv where it "
                          "is installed (default)")
    upg.add_argument("--waivers", type=Path, metavar="FILE", help="accepted verdicts with a reason and an expiry "
                                                                  "date (docs/upgrade.md)")
    upg.add_argument("--out", type=Path, default=Path("build/upgrade"),
                     help="where upgrade.md/json/xml/png and cells/ go (default: build/upgrade)")
    upg.add_argument("--cache", type=Path, help="environments, runners, exports and packages (default: "
                                                "$TORCHCONFORM_UPGRADE_CACHE, else ~/.cache/torchconform/upgrade)")
    upg.add_argument("--aoti-cache", type=Path, help=CACHE_HELP)
    upg.add_argument("--list-cells", action="store_true", help="print the plan's cells, one per line, and run "
                                                               "nothing")
    upg.add_argument("--cell", action="append", metavar="ID", help="run only this cell (repeatable; a CI matrix "
                                                                   "fans them out) and write its JSON to cells/")
    upg.add_argument("--merge", action="append", type=Path, metavar="DIR_OR_JSON",
                     help="join cell results (their JSON, or directories of them) into the report")
    upg.add_argument("--no-reuse", action="store_true",
                     help="run every cell, even one whose inputs (corpora, environments, runners, torchconform, "
                          "hardware) are those of a cached result")
    upg.add_argument("--timeout", type=float, default=1800, help="seconds per process (default: 1800)")
    upg.add_argument("--jobs", type=int, default=2, help="parallel jobs of a runner build (default: 2)")
    upg.add_argument("--quiet", action="store_true", help="no progress lines")
    upg.set_defaults(run=_upgrade)


def _parser() -> argparse.ArgumentParser:
    """The `torchconform` command line: one function per subcommand below (`verify` has no parser of its own:
    its options are torchconform-run's, parsed by the core's one option table)."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="torchconform", description=__doc__)
    parser.add_argument("--version", action="version", version=f"torchconform {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_export(sub)
    _add_compile(sub)
    _add_fuzz(sub)
    _add_verify(sub)
    _add_report(sub)
    _add_bundle_check(sub)
    _add_tolerances(sub)
    _add_localize(sub)
    _add_bench(sub)
    _add_compat(sub)
    _add_upgrade(sub)
    return parser


def _main(argv: list[str] | None = None) -> int:
    parser = _parser()
    given = list(argv) if argv is not None else sys.argv[1:]
    if given[:1] == ["verify"]:  # its options are torchconform-run's: the core's one table parses them
        return _verify(given[1:])
    args = parser.parse_args(argv)
    args._in_process = argv is not None  # called from Python: do not re-execute the interpreter
    args._argv = list(argv) if argv is not None else sys.argv[1:]
    return args.run(args)
