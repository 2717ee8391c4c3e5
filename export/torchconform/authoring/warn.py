"""Capture warnings raised while exporting, so the manifest records every one of them (TracerWarnings above all)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any


def _where(filename: str, lineno: int) -> str:
    # Keep locations machine-independent: the part after site-packages/ (torch's files) or the file name.
    marker = "site-packages" + os.sep
    if marker in filename:
        filename = filename.split(marker, 1)[1]
    else:
        filename = os.path.basename(filename)
    return f"{filename}:{lineno}"


class Caught:
    def __init__(self) -> None:
        self.raw: list[warnings.WarningMessage] = []

    def records(self, categories: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """Distinct warnings in order of first appearance, with how often each was raised."""
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for w in self.raw:
            cat = w.category.__name__
            if categories is not None and cat not in categories:
                continue
            key = (cat, str(w.message), _where(w.filename, w.lineno))
            if key in out:
                out[key]["count"] += 1
            else:
                out[key] = {"category": cat, "message": str(w.message), "where": key[2], "count": 1}
        return list(out.values())


@contextlib.contextmanager
def collect_warnings() -> Iterator[Caught]:
    caught = Caught()
    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        yield caught
    caught.raw = list(raw)
