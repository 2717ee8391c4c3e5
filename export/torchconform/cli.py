"""The ``torchconform`` command (Python side): ``torchconform export``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .registry import CaseError, select


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torchconform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="export the cases and write a golden corpus")
    exp.add_argument("--out", type=Path, default=Path("golden"), help="corpus directory (default: golden)")
    exp.add_argument("--case", action="append", metavar="GLOB", help="only cases matching GLOB (repeatable)")
    exp.add_argument("--force", action="store_true", help="replace an existing corpus")
    exp.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    if args.command == "export":
        if argv is None and os.environ.get("PYTHONHASHSEED") != "0":
            # TorchScript writes a module's __constants__ in set order, which follows Python's string hash seed;
            # with the seed fixed, exporting twice gives the same artifact bytes (docs/corpus-format.md).
            os.execve(sys.executable, [sys.executable, "-m", "torchconform", *sys.argv[1:]],
                      {**os.environ, "PYTHONHASHSEED": "0"})
        from .corpus import write_corpus

        try:
            cases = select(args.case)
            write_corpus(args.out, cases, force=args.force, log=(lambda m: None) if args.quiet else
                         (lambda m: print(m, file=sys.stderr, flush=True)))
        except (CaseError, FileExistsError) as e:
            print(f"torchconform export: error: {e}", file=sys.stderr)
            return 2
    return 0
