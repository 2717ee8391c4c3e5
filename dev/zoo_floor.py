"""The floor of a large corpus, against `verify --no-isolate` on it (issue: large corpora).

    .compat/venv-2.14.1/bin/python dev/zoo_floor.py .compat/zoo/corpus [--rounds 3]

Run with the interpreter ci/zoo.sh sets up (torch 2.14.1 + torchvision, torchconform installed into it). In one
process, alternating rounds of
  - the floor: raw LibTorch loads of every artifact of the corpus's plan and `repeat` calls per input set, inputs
    decoded beforehand, nothing read twice, hashed or compared (`_core.measure_floor`);
  - `verify --no-isolate` through the core (`torchconform.verification.run`): open the corpus, read and hash every
    file, load, call, compare, report;
then `torchconform-run --no-isolate` as a command (LibTorch's process start included). torchvision is imported first
(its operators: the detection models call torchvision::nms). Prints one JSON document; docs/bench.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--aoti-cache", default="", help="AOTInductor package cache (default: the runner's default)")
    args = ap.parse_args(argv)

    import torch
    import torchvision  # noqa: F401  (registers torchvision::nms & co. in this process)

    from torchconform import _core, verification
    from torchconform.tools.bench import breakdown

    corpus = str(args.corpus)
    threads = json.loads((args.corpus / "corpus.json").read_text()).get("exported_with", {}).get("threads") or 0
    common = [corpus, "--no-isolate", "--quiet", "--threads", str(threads or torch.get_num_threads())]
    common += ["--aoti-cache", args.aoti_cache] if args.aoti_cache else []
    quiet = lambda line: None  # noqa: E731
    size = sum(f.stat().st_size for f in args.corpus.rglob("*") if f.is_file())
    print(f"[zoo-floor] {corpus}: {size / 2**20:.0f} MiB, threads {threads}, {args.rounds} rounds", file=sys.stderr)

    opened = _core.Corpus.open(corpus)
    _core.measure_floor(opened, "cpu", threads, 2, args.aoti_cache)  # unmeasured warm-up (page cache, executors)
    verification.run(common, out=quiet)
    floors, verifies, opens, parts, verdicts = [], [], [], [], None
    for i in range(args.rounds):
        t0 = time.perf_counter()
        _core.Corpus.open(corpus)
        opens.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        floor = _core.measure_floor(opened, "cpu", threads, 2, args.aoti_cache)
        floors.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        code, results, report = verification.run(common, out=quiet)
        verifies.append(time.perf_counter() - t0)
        parts.append(breakdown(results))
        verdicts = report["summary"]
        print(f"[zoo-floor] round {i + 1}: floor {floors[-1]:.2f} s, verify {verifies[-1]:.2f} s (exit {code})",
              file=sys.stderr)
    med = statistics.median
    k = verifies.index(sorted(verifies)[len(verifies) // 2])
    split = {"open_corpus": med(opens), **parts[k]}
    split["other"] = verifies[k] - sum(split.values())

    runner = shutil.which("torchconform-run", path=str(Path(sys.executable).parent)) or "torchconform-run"
    import torchvision as tv
    lib = next(Path(tv.__file__).parent.glob("_C*.so"))
    import sysconfig
    libs = [Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("INSTSONAME"),
            Path(torch.__file__).parent / "lib" / "libtorch_python.so", lib]
    cmd = [runner, *common]
    for p in libs:
        cmd += ["--load-library", str(p)]
    walls = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ, check=False)
        walls.append(time.perf_counter() - t0)
    print(json.dumps({
        "corpus_mib": round(size / 2**20, 1), "threads": threads, "rounds": args.rounds,
        "floor_s": med(floors), "floor": floor, "verify_no_isolate_in_process_s": med(verifies),
        "ratio_in_process": med(verifies) / med(floors), "breakdown_s": split,
        "cli_no_isolate_s": med(walls), "ratio_cli_no_isolate": med(walls) / med(floors), "summary": verdicts,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
