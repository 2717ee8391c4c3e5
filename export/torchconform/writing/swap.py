"""Replacing a corpus directory atomically, with exports into one directory taking turns.

Hand-written on purpose: the standard library has no atomic directory swap, and recovery must touch only what an
export's own journal names. An export stages the new corpus beside the old one, then two renames put it in place;
a journal beside the corpus records both names first, so an export killed at any point is cleaned up by the next one
(``_recover``): its staging directory is removed, and an old corpus moved aside but not yet replaced is put back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

from ..errors import CorpusInputError

JOURNAL = ".{name}.export-{pid}.json"  # beside the corpus: what an export in progress may leave behind


@contextlib.contextmanager
def _locked(directory: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Exports into one directory take turns (flock on the directory itself: nothing is left behind). Two exports
    into the same new corpus used to race, the second silently replacing the first."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another torchconform export into {directory} to finish...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _recover(out: Path, log: Callable[[str], None]) -> None:
    """Clean up after an export that was killed (called with the lock held, so no export is running): drop its
    partial directory, and if it died between its two renames (the old corpus moved aside, the new one not yet in
    place), put the old corpus back. Only directories named in an export's journal are touched: a directory that
    merely looks like a leftover is never deleted."""
    for journal in sorted(out.parent.glob(JOURNAL.format(name=out.name, pid="*"))):
        try:
            entry = json.loads(journal.read_text())
            partial, old = out.parent / entry["partial"], out.parent / entry["old"]
            if entry["out"] != out.name or "/" in entry["partial"] + entry["old"]:
                raise CorpusInputError("not a journal of this corpus")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log(f"left {journal.name} alone: unreadable export journal ({e})")
            continue
        if old.is_dir() and not out.exists():
            old.rename(out)
            log(f"restored {out} from {old.name} (an earlier export was killed while replacing it)")
        for leftover in (partial, old):
            if leftover.is_dir():
                shutil.rmtree(leftover)
                log(f"removed {leftover.name} (left by an earlier export that was killed)")
        journal.unlink()


@contextlib.contextmanager
def replacing(out: Path, *, force: bool, log: Callable[[str], None]) -> Iterator[Path]:
    """Yields an empty staging directory beside ``out``; when the block returns, the staging directory replaces
    ``out`` (two renames, journalled); when it raises, ``out`` is left as it was and the staging directory removed.
    Refuses an existing ``out`` without ``force`` (FileExistsError)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out.parent, log):
        _recover(out, log)
        if out.exists() and not force:
            raise FileExistsError(f"{out} already exists; pass --force to replace it")
        pid = os.getpid()
        tmp = out.parent / f".{out.name}.partial-{pid}"
        old = out.parent / f".{out.name}.old-{pid}"
        journal = out.parent / JOURNAL.format(name=out.name, pid=pid)
        journal.write_text(json.dumps({"out": out.name, "partial": tmp.name, "old": old.name}) + "\n")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            yield tmp
            if out.exists():
                out.rename(old)
                tmp.rename(out)
                shutil.rmtree(old)
            else:
                tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if not old.exists():  # else the process died between the renames... or this is a bug: keep the journal
                journal.unlink()
