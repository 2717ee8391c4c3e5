"""Runs inside each PyTorch version's interpreter for ``torchconform upgrade``'s static pre-check: only that torch and
the standard library (no compiled core), and nothing newer than torch 1.13 has where it can be avoided. It reads the
version's operator registry and format windows; it runs no model.

    python -m torchconform.tools.upgrade_probe info            # {torch, cuda, torchscript_max, export_schema, ...}
    python -m torchconform.tools.upgrade_probe schemas OPS.json  # this version's schemas of the named operators
    python -m torchconform.tools.upgrade_probe judge OLD.json    # each old schema against this version's

``schemas``: OPS.json is a list of operator names as the manifests record them ("aten::conv2d" from TorchScript
graphs, "aten.conv2d.default" from exported programs); prints ``{name: {"schemas": [schema strings of every
overload], "overload": the overload named, or "", "core": core ATen?, "upgraders": [...]}}``.
``judge``: OLD.json is another version's ``schemas`` output; prints per operator whether it still exists here and,
for each old schema, this version's schema of the same overload and PyTorch's own predicates
(``FunctionSchema.is_backward_compatible_with``, ``check_forward_compatible_with``, as PyTorch's
test/forward_backward_compatibility uses them).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch


def _split(name: str) -> tuple[str, str, str]:
    """(namespace, operator, overload) of "aten::conv2d", "aten::conv2d.padding" or "aten.conv2d.default"."""
    if "::" in name:
        ns, _, rest = name.partition("::")
        op, _, overload = rest.partition(".")
        return ns, op, overload
    parts = name.split(".")
    return parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else ""


def info() -> dict[str, Any]:
    out: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda or ""}
    getter = getattr(torch._C, "_get_max_operator_version", None)  # the newest TorchScript file format it reads
    out["torchscript_max"] = int(getter()) if getter else None
    try:
        from torch._export.serde.schema import SCHEMA_VERSION

        out["export_schema"] = list(SCHEMA_VERSION)
    except Exception:  # noqa: BLE001 - no torch.export (before 2.1): no window
        out["export_schema"] = None
    capability = getattr(torch.backends.cpu, "get_cpu_capability", None) if hasattr(torch.backends, "cpu") else None
    out["cpu_capability"] = capability() if capability else ""
    return out


def _upgraders() -> dict[str, list[dict[str, Any]]]:
    getter = getattr(torch._C, "_get_operator_version_map", None)
    if getter is None:
        return {}
    return {name: [{"bumped_at": e.bumped_at_version, "upgrader": e.upgrader_name, "old_schema": e.old_schema}
                   for e in entries] for name, entries in getter().items()}


def schemas(names: list[str]) -> dict[str, Any]:
    upgraders = _upgraders()
    out = {}
    for name in names:
        ns, op, overload = _split(name)
        qualified = f"{ns}::{op}"
        try:
            found = [str(s) for s in torch._C._jit_get_schemas_for_operator(qualified)]
        except Exception:  # noqa: BLE001 - an unknown name
            found = []
        core = False
        try:
            packet = getattr(getattr(torch.ops, ns), op)
            handle = getattr(packet, overload or "default", None)
            core = bool(handle is not None and torch.Tag.core in handle.tags)
        except Exception:  # noqa: BLE001 - no such operator, or no tags in this version
            pass
        out[name] = {"qualified": qualified, "overload": overload, "schemas": found, "core": core,
                     "upgraders": [u for key, entries in upgraders.items() if key.split(".")[0] == qualified
                                   for u in entries]}
    return out


def _overload_of(schema: str) -> str:
    head = schema.split("(", 1)[0]
    return head.split(".", 1)[1] if "." in head.split("::", 1)[-1] else ""


def judge(old: dict[str, Any]) -> dict[str, Any]:
    """Each operator of another version's ``schemas`` output against this version's registry."""
    here = schemas(list(old))
    out = {}
    for name, before in old.items():
        now = here[name]
        by_overload = {_overload_of(s): s for s in now["schemas"]}
        checks = []
        for schema in before["schemas"]:
            overload = _overload_of(schema)
            if before["overload"] and overload != before["overload"] and not (
                    before["overload"] == "default" and overload == ""):
                continue  # an exported program names one overload: only that one matters
            new = by_overload.get(overload)
            entry: dict[str, Any] = {"overload": overload or "default", "old": schema, "new": new}
            if new is None:
                entry["status"] = "removed"
            elif new == schema:
                entry["status"] = "same"
            else:
                try:
                    old_s, new_s = torch._C.parse_schema(schema), torch._C.parse_schema(new)
                    entry["backward_compatible"] = bool(new_s.is_backward_compatible_with(old_s))
                    forward = getattr(new_s, "check_forward_compatible_with", None)
                    if forward is not None:
                        ok, why = forward(old_s)
                        entry["forward_compatible"], entry["forward_why"] = bool(ok), why
                except Exception as e:  # noqa: BLE001 - a schema this version cannot parse
                    entry["parse_error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                entry["status"] = "changed"
            checks.append(entry)
        out[name] = {"exists": bool(now["schemas"]), "core": now["core"], "checks": checks,
                     "upgraders": now["upgraders"]}
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["info"]:
        print(json.dumps(info()))
    elif argv[:1] == ["schemas"] and len(argv) == 2:
        with open(argv[1]) as f:
            print(json.dumps(schemas(json.load(f))))
    elif argv[:1] == ["judge"] and len(argv) == 2:
        with open(argv[1]) as f:
            print(json.dumps(judge(json.load(f))))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
