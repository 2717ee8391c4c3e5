"""The C++ side of `torchconform fuzz`, in a process of its own: one artifact of a corpus loaded once by the runner's
runtime (``_core.open_artifact``, as a verification loads it) and called on each input the fuzzer sends.

A process of its own because a runtime may crash or hang on an input (the fuzzer reports that, and starts another),
and because it must not see the user's cases module: a custom operator's Python implementation registered there
would stand in for the C++ library this process loads (``--load-library``), which is the one a service runs.

Protocol on stdin / a private copy of stdout (fd 1 itself goes to stderr, so that whatever LibTorch or an operator
library prints cannot corrupt it): length-prefixed messages written with ``torch.save`` and read with
``torch.load(weights_only=True)`` on both sides. The first message opens the artifact; each later one is a call.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from typing import Any, BinaryIO

import torch

from ..errors import SetupError

HEADER = struct.Struct("<Q")
MAX_MESSAGE = 1 << 34


def write(stream: BinaryIO, value: Any) -> None:
    buf = io.BytesIO()
    torch.save(value, buf)
    data = buf.getvalue()
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def read(stream: BinaryIO) -> Any:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        raise EOFError("the other side closed the pipe")
    (n,) = HEADER.unpack(head)
    if n > MAX_MESSAGE:
        raise SetupError(f"a message of {n} bytes")
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("the other side closed the pipe mid-message")
    return torch.load(io.BytesIO(data), weights_only=True)


def main() -> int:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    from .. import _core

    opening = read(inp)
    try:
        for lib in opening["libraries"]:
            torch.ops.load_library(lib)
        corpus = _core.Corpus.open(opening["corpus"])
        artifact = _core.open_artifact(corpus, opening["case"], opening["artifact"], opening["device"],
                                       opening["aoti_cache"], opening["allow_side_effects"])
    except Exception as e:  # noqa: BLE001 - reported to the fuzzer, which says it
        write(out, {"ok": False, "error": f"{type(e).__name__}: {e}"})
        return 0
    write(out, {"ok": True, "runtime": artifact.runtime, "load_seconds": artifact.load_seconds})
    while True:
        try:
            call = read(inp)
        except EOFError:
            return 0
        try:
            value = artifact.call(tuple(call["args"]), call["method"], list(call["keywords"]), call["seed"])
            write(out, {"ok": True, "output": value})
        except Exception as e:  # noqa: BLE001 - the runtime's refusal or error is the answer
            write(out, {"ok": False, "error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    raise SystemExit(main())
