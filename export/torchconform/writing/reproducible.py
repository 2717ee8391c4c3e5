"""TorchScript artifacts that neither depend on nor disclose where they were exported.

``torch.jit.save`` writes two things that differ between two exports of the same model: the absolute paths in its
debug records (``code/**.debug_pkl``: a scripted function's source file, and for a traced module the Python frames
of the trace, ``/home/me/cases/my_cases.py(34): forward``, through site-packages and the standard library; 16-30 per
artifact) and a random ``.data/serialization_id``. ``save`` writes the artifact with torch, then rewrites only those:

- every path under a known root becomes ``<root>/relative/path`` (``<cases>``, ``<site-packages>``, ``<stdlib>``,
  ``<torchconform>``), and the byte offsets of the source ranges that point into the rewritten text move with it (a
  range of a traced module is an offset into the concatenated frames, so a shorter path moves every later range);
- the debug record is re-emitted opcode for opcode as torch's pickler wrote it (same memo, same opcodes), which is
  checked first: a record whose unchanged re-emission differs from torch's bytes is kept as torch wrote it, and
  ``save`` says which;
- the serialization id becomes a digest of the other records.

The archive keeps its record order, compression and 64-byte data alignment. TorchScript's error messages keep their
"original code" tracebacks, with the portable paths.
"""

from __future__ import annotations

import hashlib
import os
import pickletools
import struct
import sys
import sysconfig
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALIGNMENT = 64  # PyTorchStreamWriter's kFieldAlignment: where a record's data starts in the archive


def roots() -> list[tuple[bytes, bytes]]:
    """(directory + "/", label + "/") pairs, longest first: the cases files imported in this process, site-packages,
    the standard library and the directory holding the torchconform package."""
    from ..authoring.registry import CASES_FILE_PACKAGE

    found: list[tuple[str, str]] = []
    for name, module in list(sys.modules.items()):
        if name.startswith(CASES_FILE_PACKAGE + ".") and getattr(module, "__file__", None):
            found.append((os.path.dirname(os.path.abspath(module.__file__)), "<cases>"))
    for key in ("purelib", "platlib"):
        found.append((sysconfig.get_paths()[key], "<site-packages>"))
    found.append((sysconfig.get_paths()["stdlib"], "<stdlib>"))
    found.append((str(Path(__file__).resolve().parents[2]), "<torchconform>"))
    unique = {d.rstrip("/"): label for d, label in found if d and d != "/"}
    return sorted(((d.encode() + b"/", label.encode() + b"/") for d, label in unique.items()),
                  key=lambda x: -len(x[0]))


def portable(text: bytes, known: list[tuple[bytes, bytes]]) -> tuple[bytes, list[int]]:
    """``text`` with every path under a known root written from its label, and where each old byte offset
    (0..len(text)) lands in the new text (an offset inside a replaced directory lands at its label)."""
    out = bytearray()
    where: list[int] = []
    i = 0
    while i < len(text):
        for directory, label in known:
            if text.startswith(directory, i):
                where.extend([len(out)] * len(directory))
                out += label
                i += len(directory)
                break
        else:
            where.append(len(out))
            out.append(text[i])
            i += 1
    where.append(len(out))
    return bytes(out), where


# ---- a pickle as a tree that re-emits the opcodes it was read from ---------------------------------------------------
@dataclass
class Node:
    kind: str  # str int none true false tuple list global reduce get
    value: Any = None  # str: bytes; int: int; global: (module, name); get: memo index
    children: list[Node] = field(default_factory=list)
    form: str = ""  # tuple: MARK / EMPTY / 1 / 2 / 3; get: its opcode; "+long": memoized by LONG_BINPUT
    groups: list[int] = field(default_factory=list)  # list: items per APPENDS (-1: a single APPEND)
    put: int | None = None


class Unsupported(Exception):
    """An opcode or layout this rewriter does not re-emit exactly."""


def parse(data: bytes) -> Node:
    stack: list[Any] = []
    marks: list[int] = []
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name == "PROTO":
            if arg != 2:
                raise Unsupported(f"protocol {arg}")
        elif name == "BINUNICODE":
            stack.append(Node("str", arg.encode("utf-8", "surrogatepass")))
        elif name in ("BININT", "BININT1", "BININT2"):
            # (re-emitted in its smallest form: a record torch wrote otherwise fails the unchanged re-emission check)
            stack.append(Node("int", arg))
        elif name == "NONE":
            stack.append(Node("none"))
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(Node("true" if name == "NEWTRUE" else "false"))
        elif name == "MARK":
            marks.append(len(stack))
        elif name == "TUPLE":
            start = marks.pop()
            items, stack[start:] = stack[start:], []
            stack.append(Node("tuple", children=items, form="MARK"))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items, stack[-n:] = stack[-n:], []
            stack.append(Node("tuple", children=items, form=str(n)))
        elif name == "EMPTY_TUPLE":
            stack.append(Node("tuple", form="EMPTY"))
        elif name == "EMPTY_LIST":
            stack.append(Node("list"))
        elif name == "APPENDS":
            start = marks.pop()
            items, stack[start:] = stack[start:], []
            stack[-1].children.extend(items)
            stack[-1].groups.append(len(items))
        elif name == "APPEND":
            item = stack.pop()
            stack[-1].children.append(item)
            stack[-1].groups.append(-1)
        elif name == "GLOBAL":
            module, _, attr = arg.partition(" ")
            stack.append(Node("global", (module, attr)))
        elif name == "REDUCE":
            args = stack.pop()
            stack.append(Node("reduce", children=[stack.pop(), args]))
        elif name in ("BINPUT", "LONG_BINPUT"):
            if stack[-1].put is not None:
                raise Unsupported("a value memoized twice")
            stack[-1].put = arg
            if name == "LONG_BINPUT":
                stack[-1].form += "+long"
        elif name in ("BINGET", "LONG_BINGET"):
            stack.append(Node("get", arg, form=name))
        elif name == "STOP":
            if len(stack) != 1 or marks:
                raise Unsupported("not one value")
            return stack[0]
        else:
            raise Unsupported(name)
    raise Unsupported("no STOP")


def _int(value: int) -> bytes:
    if 0 <= value <= 0xFF:
        return b"K" + bytes([value])
    if 0 <= value <= 0xFFFF:
        return b"M" + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raise Unsupported(f"integer {value}")


def emit(root: Node) -> bytes:
    out = bytearray(b"\x80\x02")

    def put(node: Node) -> None:
        if node.put is not None:
            out.extend(b"r" + struct.pack("<I", node.put) if node.form.endswith("+long")
                       else b"q" + bytes([node.put]))

    def walk(node: Node) -> None:
        k = node.kind
        if k == "str":
            out.extend(b"X" + struct.pack("<I", len(node.value)) + node.value)
        elif k == "int":
            out.extend(_int(node.value))
        elif k in ("none", "true", "false"):
            out.extend({"none": b"N", "true": b"\x88", "false": b"\x89"}[k])
        elif k == "tuple":
            form = node.form.removesuffix("+long")
            if form == "MARK":
                out.extend(b"(")
            for c in node.children:
                walk(c)
            out.extend({"MARK": b"t", "EMPTY": b")", "1": b"\x85", "2": b"\x86", "3": b"\x87"}[form])
        elif k == "list":
            out.extend(b"]")
            put(node)
            i = 0
            for g in node.groups:
                if g == -1:
                    walk(node.children[i])
                    out.extend(b"a")
                    i += 1
                else:
                    out.extend(b"(")
                    for c in node.children[i:i + g]:
                        walk(c)
                    out.extend(b"e")
                    i += g
            return
        elif k == "global":
            out.extend(b"c" + node.value[0].encode() + b"\n" + node.value[1].encode() + b"\n")
        elif k == "reduce":
            walk(node.children[0])
            walk(node.children[1])
            out.extend(b"R")
        elif k == "get":
            out.extend(b"h" + bytes([node.value]) if node.form == "BINGET" else b"j" + struct.pack("<I", node.value))
            return
        put(node)

    walk(root)
    out.extend(b".")
    return bytes(out)


def _memo(root: Node) -> dict[int, Node]:
    memo: dict[int, Node] = {}

    def walk(node: Node) -> None:
        if node.put is not None:
            memo[node.put] = node
        for c in node.children:
            walk(c)

    walk(root)
    return memo


def scrub_debug_record(data: bytes, known: list[tuple[bytes, bytes]]) -> bytes | None:
    """The debug record (FORMAT_WITH_STRING_TABLE) with its paths made portable and its source ranges moved with
    them; None when it cannot be rewritten exactly (another layout, or a re-emission that differs from torch's)."""
    try:
        root = parse(data)
        if emit(root) != data:
            return None
        memo = _memo(root)

        def deref(node: Node) -> Node:
            return memo[node.value] if node.kind == "get" else node

        fmt, table, entries = (deref(c) for c in root.children) if root.kind == "tuple" and len(
            root.children) == 3 else (None, None, None)
        if fmt is None or fmt.kind != "str" or fmt.value != b"FORMAT_WITH_STRING_TABLE" or table.kind != "tuple":
            return None
        strings = [deref(s) for s in table.children]
        if any(s.kind != "str" for s in strings):
            return None
        old = [s.value for s in strings]
        new = [portable(s, known) for s in old]
        for entry in entries.children:
            _offset, rng, _handle = deref(entry).children
            source, start, end = deref(rng).children
            intlist, _filename, _line = deref(source).children
            items = deref(deref(intlist).children[1]).children[0]  # build_intlist((list,))
            pieces = [deref(i).value for i in deref(items).children]
            # where each old offset of the concatenated text lands in the new one
            where: list[int] = []
            base = 0
            for p in pieces:
                where.extend(base + w for w in new[p][1][:-1])
                base += len(new[p][0])
            where.append(base)
            for bound in (start, end):
                if bound.kind != "int" or not 0 <= bound.value < len(where):
                    return None
                bound.value = where[bound.value]
        for s, (text, _) in zip(strings, new):
            s.value = text
        return emit(root)
    except (Unsupported, ValueError, IndexError, AttributeError, TypeError, KeyError):
        return None


def rewrite(path: Path) -> list[str]:
    """Rewrites a saved TorchScript archive in place (see the module's docstring); returns the debug records it left
    as torch wrote them."""
    known = roots()
    left: list[str] = []
    with zipfile.ZipFile(path) as z:
        records = [(i, z.read(i)) for i in z.infolist()]
    changed = []
    for info, data in records:
        if info.filename.endswith(".debug_pkl"):
            new = scrub_debug_record(data, known)
            if new is None:
                left.append(info.filename)
            else:
                data = new
        changed.append((info, data))
    digest = hashlib.sha256()
    for info, data in changed:
        if not info.filename.endswith("/.data/serialization_id"):
            digest.update(info.filename.encode() + b"\0" + hashlib.sha256(data).digest())
    serialization_id = str(int(digest.hexdigest(), 16) % 10**40).zfill(40).encode()
    tmp = path.with_name(path.name + ".rewrite")
    with open(tmp, "wb") as f, zipfile.ZipFile(f, "w") as out:
        for info, data in changed:
            if info.filename.endswith("/.data/serialization_id"):
                data = serialization_id
            new_info = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            new_info.compress_type = info.compress_type
            new_info.external_attr = info.external_attr
            if info.compress_type == zipfile.ZIP_STORED:
                # data aligned as PyTorchStreamWriter aligns it: a padding extra field ("FB") in the local header
                start = f.tell() + 30 + len(info.filename.encode())
                pad = (-(start + 4)) % ALIGNMENT
                new_info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            out.writestr(new_info, data)
    os.replace(tmp, path)
    return left


def save(module: Any, path: Path) -> list[str]:
    """``module.save(path)``, made independent of where it ran; returns the debug records left as torch wrote them."""
    module.save(str(path))
    return rewrite(Path(path))

