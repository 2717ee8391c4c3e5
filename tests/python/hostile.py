"""Hostile corpora: re-signed semantic attacks on copies of a corpus, as anyone who can commit to a corpus (and so
re-sign its whole hash chain) could make them. Shared by test_hostile.py (one regression test per finding) and
mutation.py (the randomized proof, which draws from ATTACKS)."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from conftest import GOLDEN, rehash, sha256
from torchconform.writing.values import leaves


def single(tmp: Path, case: str, src: Path = GOLDEN, name: str | None = None) -> Path:
    """A corpus holding one case of ``src`` (copied, under ``name``), signed."""
    root = tmp / "corpus"
    root.mkdir(parents=True)
    name = name or case
    shutil.copytree(src / case, root / name)
    m = json.loads((root / name / "manifest.json").read_text())
    m["case"] = name
    (root / name / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    index = json.loads((src / "corpus.json").read_text())
    index["cases"] = [{"name": name, "manifest": f"{name}/manifest.json",
                       "sha256": sha256(root / name / "manifest.json")}]
    (root / "corpus.json").write_text(json.dumps(index, indent=2) + "\n")
    return root


def expected_failures_only(tmp: Path) -> tuple[Path, dict[str, Any]]:
    """A signed one-case corpus whose every result is an expected failure that fails as marked: dynamic_router with
    only its failed capture left and a case-wide xfail mark, its artifact replaced by another model's. Returns the
    corpus and the manifest."""
    corpus = single(tmp, "dynamic_router")
    m = manifest(corpus, "dynamic_router")
    m["variants"] = [v for v in m["variants"] if "file" not in v]  # only the failed capture (XFAIL) is left...
    m["xfail"] = {"reason": "everything here is expected to fail"}
    (corpus / "dynamic_router" / "artifact.pt").write_bytes((GOLDEN / "process_outputs" / "artifact.pt").read_bytes())
    write_manifest(corpus, "dynamic_router", m)  # ...and the artifact is another model's: XFAIL too
    return corpus, m


def manifest(corpus: Path, case: str) -> dict[str, Any]:
    return json.loads((corpus / case / "manifest.json").read_text())


def write_manifest(corpus: Path, case: str, m: dict[str, Any]) -> None:
    """Writes the manifest and re-signs everything (files, manifest, corpus.json)."""
    (corpus / case / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    rehash(corpus, case)


def set_file(corpus: Path, case: str, set_name: str, role: str) -> Path:
    s = next(x for x in manifest(corpus, case)["input_sets"] if x["name"] == set_name)
    return corpus / case / s[role]["file"]


def save(value: Any, path: Path) -> None:
    if path.exists() or path.is_symlink():
        path.unlink()
    torch.save(value, path)


# ---- zip and pickle surgery -----------------------------------------------------------------------------------
def records(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def write_zip(path: Path, recs: list[tuple[str, bytes]], deflate: set[str] = frozenset()) -> None:
    if path.exists():
        path.unlink()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in recs:
            z.writestr(zipfile.ZipInfo(name), data,
                       compress_type=zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED)


def replace_record(path: Path, suffix: str, fn: Callable[[bytes], bytes]) -> None:
    """Rewrites the archive with the record whose name ends with ``suffix`` passed through ``fn``."""
    recs = records(path)
    hit = [n for n, _ in recs if n.endswith(suffix)]
    assert len(hit) == 1, (suffix, [n for n, _ in recs])
    write_zip(path, [(n, fn(d) if n == hit[0] else d) for n, d in recs])


def pickle_record(path: Path) -> bytes:
    return next(d for n, d in records(path) if n.endswith("/data.pkl"))


class Marker:
    """Unpickling this runs ``touch <marker>``: the file must never appear."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def malicious_torch_save(marker: Path, wrap: Callable[[Any], Any] = lambda x: x) -> bytes:
    buf = io.BytesIO()
    torch.save(wrap(Marker(marker)), buf)
    return buf.getvalue()


def plant_payload(corpus: Path, case: str, set_name: str, role: str, marker: Path) -> None:
    """The set's file replaced by a torch.save whose unpickling would run ``touch marker``, re-signed."""
    path = set_file(corpus, case, set_name, role)
    path.unlink()
    path.write_bytes(malicious_torch_save(marker))
    rehash(corpus, case)


def malicious_raw_pickle(marker: Path) -> bytes:
    return pickle.dumps(Marker(marker), protocol=2)


def handmade_pickle_archive(pickle_bytes: bytes, extra: list[tuple[str, bytes]] = ()) -> bytes:
    """A torch.save-shaped archive around a hand-written data.pkl."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", b"little")
        for name, data in extra:
            z.writestr(f"archive/{name}", data)
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def nested_list_pickle(depth: int) -> bytes:
    """((([[...]]),)) — a list nested ``depth`` deep as the only input, in protocol 2 opcodes."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"\x85."


def memo_bomb_pickle() -> bytes:
    """20 bytes that ask LibTorch's unpickler for a memo of 2^31 entries (32 GiB)."""
    return b"\x80\x02N" + b"r" + struct.pack("<I", 2**31 - 1) + b"\x85."


def self_containing_list_pickle() -> bytes:
    """A list that contains itself (through the memo): every recursive walk over it would never end."""
    return b"\x80\x02]q\x00h\x00a\x85."


# ---- the attacks the randomized mutation test draws from ------------------------------------------------------
# Each takes (corpus, case, set name, role, marker path, rng) and returns a description; the case is re-signed
# afterwards by the caller. Every one must end as anything but PASS for that set (and never create the marker).
def _neg_view(corpus: Path, case: str, set_name: str, role: str, marker: Path, rng: Any) -> str:
    path = set_file(corpus, case, set_name, role)
    value = torch.load(path, weights_only=True)
    tensors = [v for v in leaves(value) if isinstance(v, torch.Tensor)]
    target = rng.choice([t for t in tensors if t.numel() and t.dtype != torch.bool] or tensors)

    def swap(v: Any) -> Any:
        if v is target:
            return torch._neg_view(v.clone())  # torch.load gives -v: never equal unless v is all zeros
        if isinstance(v, tuple):
            return tuple(swap(x) for x in v)
        if isinstance(v, list):
            return [swap(x) for x in v]
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        return v

    save(swap(value), path)
    return f"{role} leaf saved as torch._neg_view"


def _record_size(corpus: Path, case: str, set_name: str, role: str, marker: Path, rng: Any) -> str:
    path = set_file(corpus, case, set_name, role)
    delta = rng.choice((16, 1 << 20, -4, -16))

    def resize(d: bytes) -> bytes:
        return d + bytes(delta) if delta > 0 else d[:max(0, len(d) + delta)]

    replace_record(path, "/data/0", resize)
    return f"{role} storage record resized by {delta} bytes"


def _tolerance(corpus: Path, case: str, set_name: str, role: str, marker: Path, rng: Any) -> str:
    """Loosen the tolerance and move the set's golden by 1000 at one element: the result may pass under the
    loosened tolerance, but never as a plain PASS (the mutation test checks the LOOSENED mark); an override on a
    path that matches nothing must fail."""
    m = manifest(corpus, case)
    kind = rng.choice(("rtol", "atol", "ulp", "unmatched"))
    tol = {"rtol": {"default": {"mode": "allclose", "rtol": 1e9}, "outputs": {}},
           "atol": {"default": {"mode": "allclose", "atol": 1e9}, "outputs": {}},
           "ulp": {"default": {"mode": "ulp", "max_ulp": 2**63 - 1}, "outputs": {}},
           "unmatched": {"default": {"mode": "allclose"}, "outputs": {"$[99]": {"mode": "exact"}}}}[kind]
    m["tolerance"] = tol
    for v in m.get("variants", []):
        v.pop("tolerance", None)
    (corpus / case / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    path = set_file(corpus, case, set_name, "expected")
    value = torch.load(path, weights_only=True)
    leaf = next(t for t in [value, *leaves(value)] if isinstance(t, torch.Tensor) and t.numel()
                and t.dtype != torch.bool)
    leaf.view(-1)[0] += 1000
    save(value, path)
    return f"tolerance {kind}, golden moved by 1000"


def _malicious_data(corpus: Path, case: str, set_name: str, role: str, marker: Path, rng: Any) -> str:
    path = set_file(corpus, case, set_name, role)
    wrap = rng.choice((lambda x: x, lambda x: (x,), lambda x: {"a": x}))
    path.unlink()
    path.write_bytes(malicious_torch_save(marker, wrap))
    return f"{role} is a torch.save of an object whose unpickling runs a command"


def _handmade_pickle(corpus: Path, case: str, set_name: str, role: str, marker: Path, rng: Any) -> str:
    kind = rng.choice(("memo", "nested", "cycle", "expand", "strides"))
    path = set_file(corpus, case, set_name, role)
    if kind == "expand":
        save((torch.zeros(1).expand(3 * 2**30),), path)
        return "input is an expanded view of 3 * 2^30 elements over 1"
    if kind == "strides":  # size (4,) rewritten as (1000,) in the pickle: the view reaches far past its storage
        save((torch.zeros(4),), path)
        replace_record(path, "/data.pkl", lambda d: d.replace(b"K\x04\x85", b"M\xe8\x03\x85", 1))
        return "tensor size patched to reach past its storage"
    data = {"memo": memo_bomb_pickle(), "nested": nested_list_pickle(100_000),
            "cycle": self_containing_list_pickle()}[kind]
    path.unlink()
    path.write_bytes(handmade_pickle_archive(data))
    return f"hand-written pickle: {kind}"


def _dict_keys(corpus: Path, case: str, set_name: str, role: str, marker: Path, rng: Any) -> str:
    path = set_file(corpus, case, set_name, role)
    value = torch.load(path, weights_only=True)
    save({"\x01": value, "\\x01": value}, path)
    return f"{role} wrapped in a dict whose two keys print alike"


def _zeros_like_leaves(value: Any, batch_dim: bool) -> Any:
    """The value with every tensor emptied along its first dimension (a 0-element batch), ints kept, lists
    emptied."""
    if isinstance(value, torch.Tensor):
        return value[:0] if value.dim() else value.reshape(1)[:0]
    if isinstance(value, tuple):
        return tuple(_zeros_like_leaves(v, batch_dim) for v in value)
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {k: _zeros_like_leaves(v, batch_dim) for k, v in value.items()}
    return value


def _empty_goldens(corpus: Path, case: str, set_name: str, role: str, marker: Path, rng: Any) -> str:
    """Every input set's inputs and goldens emptied (0-element batches, empty lists), re-signed: structures that
    compare equal with nothing in them. Never a PASS: a result that compared nothing verified nothing."""
    m = manifest(corpus, case)
    for s in m["input_sets"]:
        for r in ("inputs", "expected"):
            path = corpus / case / s[r]["file"]
            save(_zeros_like_leaves(torch.load(path, weights_only=True), True), path)
    return "every set's inputs and goldens emptied"


def side_effect_module(marker: Path, where: str) -> torch.jit.ScriptModule:
    """A TorchScript module that writes ``marker`` (torch.save) from ``where``: "forward" or "__setstate__" (which
    runs while the artifact loads)."""

    class Writes(torch.nn.Module):
        def __init__(self, path: str) -> None:
            super().__init__()
            self.n = torch.zeros(1)
            self.path = path

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.save(self.n, self.path)
            return x

    class WritesOnLoad(torch.nn.Module):
        def __init__(self, path: str) -> None:
            super().__init__()
            self.n = torch.zeros(1)
            self.path = path

        @torch.jit.export
        def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
            return (self.n, self.path, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
            self.n = state[0]
            self.path = state[1]
            self.training = state[2]
            torch.save(self.n, self.path)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    return torch.jit.script((Writes if where == "forward" else WritesOnLoad)(str(marker)))


def _side_effect_artifact(corpus: Path, case: str, set_name: str, role: str, marker: Path, rng: Any) -> str:
    """The case's TorchScript artifact replaced by one whose forward, or whose __setstate__ (run while it loads),
    writes a file with torch.save (the marker), re-signed."""
    where = rng.choice(("forward", "__setstate__"))
    artifact = corpus / case / manifest(corpus, case)["artifact"]["file"]
    artifact.unlink()
    side_effect_module(marker, where).save(str(artifact))
    return f"artifact writes a file from {where}"


def legacy_pickle_weight(pt2: Path, marker: Path) -> None:
    """An exported program with one weight switched to use_pickle and its record replaced by a legacy (pre-zip)
    torch.save whose unpickling runs ``touch marker`` (torch.export.load unpickles use_pickle payloads with
    weights_only=False)."""
    recs = records(pt2)
    config_name = next(n for n, _ in recs if n.endswith("/data/weights/model_weights_config.json"))
    config = json.loads(dict(recs)[config_name])
    fqn, meta = next(iter(config["config"].items()))
    meta["use_pickle"] = True
    target = config_name.rsplit("/", 1)[0] + "/" + meta["path_name"]
    buf = io.BytesIO()
    torch.save(Marker(marker), buf, _use_new_zipfile_serialization=False)
    write_zip(pt2, [(n, json.dumps(config).encode() if n == config_name else buf.getvalue() if n == target else d)
                    for n, d in recs])


def has_weights(pt2: Path) -> bool:
    """Whether the exported program stores weights (a payload record ``legacy_pickle_weight`` can switch)."""
    recs = dict(records(pt2))
    config = next((d for n, d in recs.items() if n.endswith("/data/weights/model_weights_config.json")), b"{}")
    return bool(json.loads(config).get("config"))


def _legacy_pickle_pt2(corpus: Path, case: str, set_name: str, role: str, marker: Path, rng: Any) -> str:
    program = next(v for v in manifest(corpus, case)["variants"] if v.get("file", "").endswith(".pt2"))
    path = corpus / case / program["file"]
    data = path.read_bytes()
    path.unlink()  # (a hard link into golden/: never write through it)
    path.write_bytes(data)
    legacy_pickle_weight(path, marker)
    return "a program weight made use_pickle with a legacy torch.save payload"


def _huge_envelope(corpus: Path, case: str, set_name: str, role: str, marker: Path, rng: Any) -> str:
    """A noise envelope of 1e300 on every output of the set, and its golden moved by 1000 at one element: a FAIL,
    never reported "within" its envelope."""
    from torchconform import _core

    m = manifest(corpus, case)
    s = next(x for x in m["input_sets"] if x["name"] == set_name)
    path = set_file(corpus, case, set_name, "expected")
    value = torch.load(path, weights_only=True)
    paths = [leaf.path for leaf in _core.compare(value, value).leaves]  # every output path, as the runner names it
    s["envelope"] = {"sources": ["ATEN_CPU_CAPABILITY=default"],
                     "outputs": {p: {"max_abs": 1e300, "max_ulp": 1e18} for p in paths}}
    (corpus / case / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    leaf = next(t for t in [value, *leaves(value)] if isinstance(t, torch.Tensor) and t.numel()
                and t.dtype != torch.bool)
    leaf.view(-1)[0] += 1000
    save(value, path)
    return "envelope 1e300, golden moved by 1000"


ATTACKS: dict[str, Callable[..., str]] = {
    "neg_view": _neg_view, "record_size": _record_size, "tolerance": _tolerance,
    "malicious_data": _malicious_data, "handmade_pickle": _handmade_pickle, "dict_keys": _dict_keys,
    "empty_goldens": _empty_goldens, "side_effect_artifact": _side_effect_artifact,
    "legacy_pickle_pt2": _legacy_pickle_pt2, "huge_envelope": _huge_envelope,
}
