"""SHA-256 of a corpus file, as the manifest records it (one helper for the writer, the envelope pass and the
AOTInductor package cache; a module of its own so neither imports the other)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
