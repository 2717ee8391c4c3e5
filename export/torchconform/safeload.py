"""Reading corpus files in Python without running code from them.

A corpus is data that anyone who can commit to it may have written. ``torch.load(weights_only=True)`` is PyTorch's
safe reader for ``torch.save`` files, but ``torch.export.load`` unpickles some records of a ``.pt2`` with
``weights_only=False`` (sample inputs fall back to it, pickled weights and constants use it, opaque objects go
through ``pickle.loads``): a malicious record runs its code the moment the program is loaded. Every exported program
is therefore checked record by record before ``torch.export.load`` sees it, and loaded with unpickling of anything
outside PyTorch's weights-only allowlist refused as a second line (an audit hook on ``pickle.find_class``).

Pure Python and torch: ``compat_probe`` imports it inside other PyTorch versions, where the compiled core is absent.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import pickletools
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import CorpusInputError

# Bounds on what a record may inflate to (the C++ reader's limits, cpp_runner/src/archive.h).
MAX_INFLATED_RECORD = 64 << 20
MAX_INFLATED_TOTAL = 512 << 20


class UnsafeFile(CorpusInputError):
    """A corpus file that could run code, or allocate without bound, if it were loaded."""


def load_data(path: Path | str | io.BytesIO) -> Any:
    """A ``torch.save`` file of a corpus (inputs, goldens): weights-only, on the CPU."""
    return torch.load(path, weights_only=True, map_location="cpu")


def _starts_with_pickle(data: bytes) -> bool:
    """Whether ``data`` begins with a complete pickle stream: a raw pickle, or a legacy (pre-zip) ``torch.save``,
    which is several pickles and raw storage bytes in a row. (Raw tensor bytes may start with 0x80 by chance; a
    stream that parses from its first byte to a STOP is a pickle.)"""
    if len(data) < 3 or data[0] != 0x80 or not 2 <= data[1] <= 5:
        return False
    try:
        for op, _arg, _pos in pickletools.genops(data):
            if op.name == "STOP":
                return True
    except Exception:  # noqa: BLE001 - not a pickle
        return False
    return False


def _payload_records(records: list[tuple[str, bytes]], what: str) -> tuple[set[str], set[str]]:
    """(raw, pickled): the records a ``.pt2``'s payload configs (weights, constants) name as raw tensor bytes, which
    torch.export.load only reinterprets, and as ``use_pickle`` payloads, which it unpickles with
    ``weights_only=False``."""
    by_name = dict(records)
    raw: set[str] = set()
    pickled: set[str] = set()
    for name, data in records:
        if not name.endswith(("/data/weights/model_weights_config.json",
                              "/data/constants/model_constants_config.json")):
            continue
        folder = name.rsplit("/", 1)[0]
        try:
            config = json.loads(data, object_pairs_hook=_unique_keys)["config"]
            entries = [(meta["path_name"], bool(meta.get("use_pickle"))) for meta in config.values()]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UnsafeFile(f"{what}: unreadable payload config {name!r}: {e}") from None
        for path_name, use_pickle in entries:
            record = f"{folder}/{path_name}"
            if record not in by_name:
                raise UnsafeFile(f"{what}: payload config {name!r} names a record {path_name!r} that is not there")
            (pickled if use_pickle else raw).add(record)
    if raw & pickled:
        raise UnsafeFile(f"{what}: a record is named both raw and pickled by the payload configs")
    return raw, pickled


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise CorpusInputError("a key appears twice in one JSON object")
    return dict(pairs)


def check_archive(path: Path | str | io.BytesIO, what: str) -> list[tuple[str, bytes]]:
    """The records of a zip archive of the corpus, refused when encrypted, compressed with anything but deflate, or
    inflating beyond the limits. Returns (name, bytes) pairs."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise UnsafeFile(f"{what}: a record name appears twice (readers would disagree on it)")
            total = 0
            for info in infos:
                if info.flag_bits & 1:
                    raise UnsafeFile(f"{what}: record {info.filename!r} is encrypted")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise UnsafeFile(f"{what}: record {info.filename!r} uses compression {info.compress_type}")
                if info.compress_type == zipfile.ZIP_DEFLATED:
                    total += info.file_size
                    if info.file_size > MAX_INFLATED_RECORD or total > MAX_INFLATED_TOTAL:
                        raise UnsafeFile(f"{what}: record {info.filename!r} would inflate to {info.file_size} bytes")
            return [(i.filename, z.read(i)) for i in infos]
    except zipfile.BadZipFile as e:
        raise UnsafeFile(f"{what}: not a readable zip archive: {e}") from e


def check_exported_program(path: Path | str | io.BytesIO, what: str = "") -> None:
    """Refuses a ``.pt2`` any of whose records would be unpickled with code execution: a nested ``torch.save``
    archive must load with ``weights_only=True``; a ``use_pickle`` payload must be one; a raw pickle or a legacy
    (pre-zip) ``torch.save`` (PyTorch writes raw pickles for custom and opaque objects) is refused outright. Only the
    records the payload configs name as raw tensor bytes are not looked into."""
    what = what or str(path)
    records = check_archive(path, what)
    raw, pickled = _payload_records(records, what)
    for name, data in records:
        if name in raw:  # reinterpreted as tensor bytes (torch.frombuffer), never unpickled
            continue
        if data[:4] == b"PK\x03\x04":
            try:
                load_data(io.BytesIO(data))
            except Exception as e:  # noqa: BLE001 - whatever the reason, it would not load safely
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise UnsafeFile(f"{what}: record {name!r} does not load with torch.load(weights_only=True) "
                                 f"({type(e).__name__}: {first[:300]}); torch.export.load would unpickle it "
                                 "with weights_only=False, which can run code") from None
        elif name in pickled:
            raise UnsafeFile(f"{what}: record {name!r} is a use_pickle payload that is not a zip torch.save (a "
                             "legacy torch.save or a raw pickle); torch.export.load would unpickle it with "
                             "weights_only=False, which can run code, so this exported program is not loaded")
        elif _starts_with_pickle(data):
            raise UnsafeFile(f"{what}: record {name!r} is a raw pickle or a legacy torch.save (a custom or opaque "
                             "object); unpickling it can run code, so this exported program is not loaded")


_guard = threading.local()
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "pickle.find_class" or not getattr(_guard, "allowed", None):
        return
    module, name = args[0], args[1]
    if f"{module}.{name}" not in _guard.allowed:
        raise UnsafeFile(f"refused to unpickle global {module}.{name} while loading a corpus file (it is not in "
                         "torch's weights-only allowlist)")


@contextlib.contextmanager
def no_unsafe_unpickling() -> Iterator[None]:
    """Within the block, on this thread, a pickle that names a global outside PyTorch's weights-only allowlist
    raises instead of importing it (audit hooks cannot be removed; the hook is inert outside the block)."""
    global _hook_installed
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
    except ImportError:  # a torch without the weights-only unpickler: the record check above is all there is
        yield
        return
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True
    previous = getattr(_guard, "allowed", None)
    _guard.allowed = set(_get_allowed_globals())
    try:
        yield
    finally:
        _guard.allowed = previous


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


def load_exported_program(path: Path | str | io.BytesIO, what: str = "") -> Any:
    """``torch.export.load`` of a corpus program, after ``check_exported_program`` and under
    ``no_unsafe_unpickling``. torch.export.load logs the real error of a program it cannot read (with its
    traceback) and raises a generic one: the real one is raised instead, and nothing is logged."""
    check_exported_program(path, what)
    if isinstance(path, io.BytesIO):
        path.seek(0)
    logger = logging.getLogger("torch.export")  # (torch's logging gives it handlers of its own: set aside)
    captured, propagate, handlers = _Captured(), logger.propagate, logger.handlers[:]
    logger.handlers = [captured]
    logger.propagate = False
    try:
        with no_unsafe_unpickling():
            return torch.export.load(path if isinstance(path, io.BytesIO) else str(path))
    except Exception:
        if captured.errors:
            raise captured.errors[0] from None
        raise
    finally:
        logger.handlers = handlers
        logger.propagate = propagate
