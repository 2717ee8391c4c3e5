"""Compiling one exported program into an AOTInductor package, atomically, with the key.json that lets a cache hit
be re-validated. Pure torch and the standard library: ``torchconform compile`` (aoti.py, which computes the package
paths with the core) and the compat probe inside other PyTorch versions (whose paths the parent computes with the
core's key for that version) both call it; the cache key exists once, in C++ (program_key, aoti_package_path)."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import CorpusInputError, SetupError
from ..safeload import UnsafeFile, load_exported_program
from .digest import sha256_file


def cached_package_problem(package: Path, program_key: str) -> str:
    """Why a cached package cannot be trusted to be the complete output of a compile of this program ("" when it
    can): its key.json must name the program and the package's own size and SHA-256 (a truncated or replaced
    package used to be reported as cached, and the runner then failed on it)."""
    try:
        key = json.loads((package.parent / "key.json").read_text())
    except (OSError, ValueError) as e:
        return f"no readable key.json: {e}"
    if not isinstance(key, dict) or "program_key" not in key:
        return "key.json records no program key (written by an older torchconform)"
    if key.get("program_key") != program_key:
        return "key.json names another program"
    if "package_sha256" not in key:
        return "key.json has no package digest (written by an older torchconform)"
    try:
        if package.stat().st_size != key.get("package_bytes"):
            return f"{package.stat().st_size} bytes, key.json says {key.get('package_bytes')}"
        if sha256_file(package) != key["package_sha256"]:
            return "its SHA-256 differs from key.json's"
    except OSError as e:
        return str(e)
    return ""


def register_stand_ins(types: list[dict[str, Any]], what: str) -> None:
    """Registers a structural stand-in for each user container a program's specs name (manifest ``pytree_types``),
    so that torch.export.load can rebuild its specs without the model's code: a namedtuple with the same fields, a
    dataclass with the same fields, under the same serialized name. Nothing from the corpus is imported or run. A
    name already registered (the real class, or an earlier stand-in) is kept when its fields agree."""
    from torch.utils import _pytree as pytree

    for t in types:
        fields = list(t["fields"]) + list(t.get("none_fields", []))
        known = pytree.SERIALIZED_TYPE_TO_PYTHON_TYPE.get(t["name"])
        if known is not None:
            have = (list(known._fields) if hasattr(known, "_fields") else
                    [f.name for f in dataclasses.fields(known)] if dataclasses.is_dataclass(known) else fields)
            if t["kind"] in ("mapping", "node"):
                continue  # (any keys or children: the program's spec names them)
            if sorted(have) != sorted(fields):
                raise SetupError(f"{what}: pytree type {t['name']!r} is registered in this process with fields "
                                 f"{have}, the program was captured with {fields}")
            continue
        ident = re.sub(r"\W", "_", t["name"].rsplit(".", 1)[-1]) or "StandIn"
        try:
            if t["kind"] == "mapping":  # a dict subclass flattened to its values with its keys as the context
                cls = type(ident, (dict,), {})
                pytree.register_pytree_node(cls, lambda d: (list(d.values()), list(d.keys())),
                                            lambda values, keys, cls=cls: cls(zip(keys, values)),
                                            serialized_type_name=t["name"])
            elif t["kind"] == "node":  # any registered class: its children, its context kept as serialized
                cls = type(ident, (), {"__init__": lambda self, children, context: self.__dict__.update(
                    children=list(children), context=context)})
                pytree.register_pytree_node(cls, lambda x: (x.children, x.context),
                                            lambda values, context, cls=cls: cls(values, context),
                                            serialized_type_name=t["name"], to_dumpable_context=lambda c: c,
                                            from_dumpable_context=lambda c: c)
            elif t["kind"] == "namedtuple":
                pytree._register_namedtuple(collections.namedtuple(ident, fields), serialized_type_name=t["name"])
            else:
                cls = dataclasses.make_dataclass(ident, [(f, Any) for f in fields])
                torch.export.register_dataclass(cls, serialized_type_name=t["name"])
        except Exception as e:  # noqa: BLE001 - e.g. a field name a namedtuple refuses
            raise SetupError(f"{what}: cannot register a stand-in for pytree type {t['name']!r}: "
                             f"{type(e).__name__}: {e}") from e


def side_effect_calls(program: Any, forbidden: list[str]) -> list[str]:
    """The calls of the exported program's graphs (submodules' included) to operators in ``forbidden`` (the core's
    ``side_effect_operators``, e.g. "aten::from_file"): an AOTInductor package runs them wherever it is loaded."""
    found = []
    for module in program.graph_module.modules():
        graph = getattr(module, "graph", None)
        for node in graph.nodes if graph is not None else ():
            schema = getattr(node.target, "_schema", None)
            if schema is not None and schema.name in forbidden:
                found.append(f"{schema.name} (node {node.name})")
    return found


def compile_program(program: Path | io.BytesIO, what: str, sha256: str, device: str, target: Path,
                    pytree_types: list[dict[str, Any]] | None = None, forbidden_ops: list[str] = (),
                    program_key: str = "", options: dict[str, Any] | None = None) -> None:
    """Compiles the exported program (a path, or its hash-checked bytes) for ``device`` into ``target``
    (``<key>/model.pt2``). ``pytree_types``: the user containers its specs name (register_stand_ins).
    ``forbidden_ops``: operators that act outside the process, refused in the program's graph. ``program_key``: the
    core's key of the program (recorded in key.json, which the runner checks); ``options``: AOTInductor's own
    (``inductor_configs``: e.g. fallback_random, emulate_precision_casts), recorded in the manifest's aoti_options and
    part of the key. Raises ValueError (UnsafeFile for a program whose pickles could run code) naming it."""
    data = program.getvalue() if isinstance(program, io.BytesIO) else Path(program).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:  # the corpus was opened (and hashed) a moment ago: re-check
        raise CorpusInputError(f"{what}: SHA-256 changed while compiling")
    register_stand_ins(pytree_types or [], what)
    try:
        # Never a plain torch.export.load: it unpickles some records with weights_only=False (safeload.py).
        loaded = load_exported_program(io.BytesIO(data), what)
    except UnsafeFile:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged or too-new program: say which and why, no traceback
        raise CorpusInputError(f"{what}: torch.export.load failed: {type(e).__name__}: {e}") from e
    calls = side_effect_calls(loaded, list(forbidden_ops))
    if calls:
        raise UnsafeFile(f"{what}: refused: the program calls {', '.join(calls)}, which acts outside the process "
                         "(reads or writes files, or prints); its package would do so wherever it is verified. "
                         "Compile a program you trust with --allow-side-effects")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SetupError("--device cuda: CUDA is not available to this torch")
        loaded = torch.export.passes.move_to_device_pass(loaded, "cuda")
    # Built next to the final place and renamed into it: a killed compile leaves no half package behind.
    tmp = target.parent.with_name(target.parent.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        try:
            with torch.no_grad():
                torch._inductor.aoti_compile_and_package(loaded, package_path=str(tmp / target.name),
                                                         inductor_configs=dict(options or {}))
        except Exception as e:  # noqa: BLE001 - name the program; the compiler's own log went to stderr
            raise SetupError(f"{what}: AOTInductor compile for {device} failed: {type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
        package = tmp / target.name
        (tmp / "key.json").write_text(json.dumps({
            "program_key": program_key, "program_sha256": sha256, "aoti_options": dict(options or {}),
            "torch": torch.__version__, "device": device,
            "package_sha256": sha256_file(package), "package_bytes": package.stat().st_size,
            "program": what, "compiled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2) + "\n")
        shutil.rmtree(target.parent, ignore_errors=True)
        tmp.rename(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
