"""``torchconform tolerances``: the minimum tolerance each output of a corpus needed, measured by the runner, and with
``--suggest`` the per-output tolerances that would pass them with a margin.

The numbers are the comparator's (each JSON leaf's ``needed_rtol`` at its atol, ``needed_atol`` at its rtol, and
``max_ulp``), taken as the maximum over the input sets and devices of the report, per case, artifact and output path.
A suggestion is made only where the output needs more than its current tolerance gives, or is within the margin of
it; it loosens atol (at the current rtol), which is what near-zero outputs need, and says so when even that cannot
work (a NaN, an integer or a structural mismatch). Nothing is written into the corpus: a tolerance is a decision, the
command gives the numbers to make it with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..text import json_text, markdown, markdown_code


@dataclass
class Need:
    case: str
    artifact: str  # "" for the TorchScript artifact, else the variant (a runtime suffix dropped)
    path: str
    dtype: str
    tolerance: str  # as text, for the table
    applied: dict[str, Any]  # the same as data (the report's applied_tolerance: mode, rtol, atol, max_ulp)
    rtol: float = 0.0  # the most any input set needed
    atol: float = 0.0
    ulp: float = 0.0
    failed: bool = False
    sets: set[str] = field(default_factory=set)


def _val(v: float | None) -> float:
    return math.inf if v is None else float(v)


def needs(report: dict[str, Any]) -> list[Need]:
    """Per (case, artifact, output path) of floating outputs: the maxima over the report's compared results."""
    out: dict[tuple[str, str, str], Need] = {}
    for r in report["results"]:
        for leaf in r.get("leaves") or []:
            if not (leaf["dtype"].startswith(("float", "bfloat", "complex")) or leaf["kind"] == "float"):
                continue
            key = (r["case"], r["artifact"].split("@")[0], leaf["path"])
            n = out.setdefault(key, Need(*key, leaf["dtype"], leaf["tolerance"], leaf["applied_tolerance"]))
            n.rtol = max(n.rtol, _val(leaf["needed_rtol"]))
            n.atol = max(n.atol, _val(leaf["needed_atol"]))
            n.ulp = max(n.ulp, _val(leaf["max_ulp"]))
            n.failed |= not leaf["ok"]
            n.sets.add(r["input_set"])
    return list(out.values())


def suggest(n: Need, margin: float) -> tuple[str, dict[str, Any] | None]:
    """(what to do, the per-output tolerance to give) for one output."""
    if n.applied["mode"] != "allclose":
        return f"compared under {n.tolerance}: no allclose suggestion", None
    rtol, atol = float(n.applied["rtol"]), float(n.applied["atol"])
    if math.isinf(n.atol):
        return "no tolerance passes it (NaN, inf or a mismatch of another kind): a real difference", None
    if n.atol * margin <= atol and not n.failed:
        return f"passes with a margin of {margin:g} or more: keep", None
    want = float(f"{n.atol * margin:.2g}")
    return (f"atol {atol:g} -> {want:g} (needs {n.atol:.3g} at rtol {rtol:g}, x{margin:g} margin)",
            {"mode": "allclose", "rtol": rtol, "atol": want})


def render(report: dict[str, Any], margin: float, with_suggestions: bool) -> str:
    rows = needs(report)
    lines = ["| case | artifact | output | dtype | tolerance | needs rtol (atol as is) | needs atol (rtol as is) | "
             "max ULP | sets |" + (" suggestion |" if with_suggestions else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if with_suggestions else "")]
    policies: dict[tuple[str, str], dict[str, Any]] = {}
    for n in sorted(rows, key=lambda x: (x.case, x.artifact, x.path)):
        line = (f"| {markdown(n.case)} | {markdown(n.artifact or 'TorchScript')} | {markdown_code(n.path)} | "
                f"{markdown(n.dtype)} | {markdown(n.tolerance)} | {n.rtol:.3g} | {n.atol:.3g} | {n.ulp:.3g} | "
                f"{len(n.sets)} |")
        if with_suggestions:
            text, tol = suggest(n, margin)
            line += f" {text} |"
            if tol:
                policies.setdefault((n.case, n.artifact), {})[n.path] = tol
        lines.append(line)
    if with_suggestions:
        head = "Suggested per-output tolerances (each case's `tolerance=`, or the variant's, in its declaration):"
        lines += ["", head if policies else "No output needs a looser tolerance.", ""]
        for (case, artifact), outputs in sorted(policies.items()):
            where = f"{case}" + (f", variant {artifact}" if artifact else "")
            policy = {"default": {"mode": "allclose"}, "outputs": outputs}
            lines.append(f"- {markdown(where)}: {markdown_code(json_text(policy))} (merge with any policy the case "
                         "already has)")
    return "\n".join(lines) + "\n"
