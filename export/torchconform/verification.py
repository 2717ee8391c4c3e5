"""Verifying a corpus from Python: the C++ run (``_core.verify``) with the C++ option table, nothing re-implemented.

    code, results, report = verification.run(["golden", "--device", "cpu", "--quiet"])

``results`` are the runner's ``SetResult`` objects; ``report`` is the JSON report document as a dict, built by the
same C++ code that writes ``--json`` files (no temporary file, no second mapping); ``{}`` for ``--list``, which
runs nothing."""

from __future__ import annotations

import json
from typing import Any, Callable


def run(args: list[str], *, default_corpus: str = "", out: Callable[[str], None] | None = None,
        progress: Callable[[str], None] | None = None) -> tuple[int, list[Any], dict[str, Any]]:
    from . import _core

    options = _core.parse_verify_args([str(a) for a in args], default_corpus)
    code, results, document = _core.verify(options, out=out or (lambda line: None),
                                           progress=None if options.quiet else progress)
    # --list runs nothing and builds no report: an empty document (its ids went to `out`)
    return code, results, json.loads(document) if document else {}


def runner_executable() -> str:
    """The ``torchconform-run`` installed beside this interpreter (the package's own build), else the one on PATH."""
    import shutil
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("torchconform-run")
    return str(exe) if exe.exists() else (shutil.which("torchconform-run") or "torchconform-run")
