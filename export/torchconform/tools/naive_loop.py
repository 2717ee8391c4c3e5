"""The obvious alternative to torchconform, as a user would write it: a Python loop of ``torch.jit.load`` + call +
``torch.testing.assert_close`` over a corpus. ``torchconform bench`` times it against ``torchconform-run`` on the same
corpus (docs/bench.md). It checks what the corpus asks for (methods, preludes, seeds, exported programs through
their AOTInductor packages, expected failures) and nothing more: no hashes, no ULP statistics, no isolation.

    python -m torchconform.tools.naive_loop golden [--repeat 2] [--aoti-cache DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def run(corpus: Path, repeat: int = 2, aoti_cache: Path | None = None) -> tuple[int, int, int]:
    """(checks passed, checks failed, artifacts that failed to load) over every artifact and input set."""
    import torch

    from .. import _core
    from ..safeload import load_data
    from ..writing import protocol
    from ..writing.aoti import default_cache, package_path

    cache = aoti_cache or default_cache()
    torch._C._jit_set_texpr_fuser_enabled(False)  # the same numerics policy as the runner
    passed = failed = unloadable = 0
    index = json.loads((corpus / "corpus.json").read_text())
    opened = _core.Corpus.open(str(corpus))  # (only for the packages' cache key, which the core defines)
    for entry in index["cases"]:
        case_dir = corpus / entry["name"]
        manifest = json.loads((case_dir / "manifest.json").read_text())
        sets = {s["name"]: s for s in manifest["input_sets"]}
        data = {name: (load_data(case_dir / s["inputs"]["file"]), load_data(case_dir / s["expected"]["file"]))
                for name, s in sets.items()}
        # (how to load it, which sets): the TorchScript artifact, TorchScript variants, AOTInductor packages
        artifacts = []
        if manifest.get("artifact"):
            artifacts.append(("torchscript", case_dir / manifest["artifact"]["file"], list(sets)))
        for v in manifest.get("variants", []):
            if v.get("file") and v["kind"] == "torchscript":
                artifacts.append(("torchscript", case_dir / v["file"], v.get("input_sets", list(sets))))
            elif v.get("file") and "aoti" in v.get("runtimes", []):
                key = _core.program_key(opened, entry["name"], v["name"])
                artifacts.append(("aoti", package_path(cache, key, "cpu"), v.get("input_sets", list(sets))))
        for kind, path, names in artifacts:
            try:
                loaded = torch.jit.load(str(path)).eval() if kind == "torchscript" else \
                    torch._inductor.aoti_load_package(str(path))
            except Exception:  # noqa: BLE001 - e.g. the expected failure of optimize_for_inference
                unloadable += 1
                continue
            for name in names:
                s = sets[name]
                inputs, expected = data[name]
                # A prelude changes module state: a fresh module of its own (the set's protocol, protocol.py).
                target = torch.jit.load(str(path)).eval() if kind == "torchscript" and s["prelude"] else loaded
                protocol.apply_prelude(target, [(p["method"], p["args"]) for p in s["prelude"]])
                method = "forward" if kind == "aoti" else s["method"]
                with torch.inference_mode():
                    for _ in range(repeat):
                        try:
                            args, kwargs = protocol.split_keywords(inputs, s.get("keywords", []))
                            out = protocol.call(target, method, args, s.get("seed"), kwargs)
                            torch.testing.assert_close(out, expected, equal_nan=True)
                            passed += 1
                        except Exception:  # noqa: BLE001 - a mismatch or a failing call: count it
                            failed += 1
                            break
    return passed, failed, unloadable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torchconform.tools.naive_loop",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--aoti-cache", type=Path)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    passed, failed, unloadable = run(args.corpus, args.repeat, args.aoti_cache)
    print(json.dumps({"passed": passed, "failed": failed, "unloadable": unloadable,
                      "seconds": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
