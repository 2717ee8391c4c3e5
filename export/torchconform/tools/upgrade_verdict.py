"""``torchconform upgrade``'s verdicts: one word per model and target version, from the cells' findings, with its
reasons; waivers that accept a known verdict until they expire; the exit status; the merged result the reports
render (tools/upgrade_report.py). Nothing here runs anything: it judges cell results, so ``--merge`` can judge cells
that ran on other machines."""

from __future__ import annotations

import datetime
import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import compat

VERDICTS = ["PASS", "DRIFT", "REBUILD-REQUIRED", "ROLLBACK-UNSAFE", "BREAK"]  # by severity
OK_VERDICTS = {"PASS", "DRIFT"}


@dataclass
class Verdict:
    model: str
    to: str
    verdict: str = "PASS"
    category: str = ""
    reasons: list[str] = field(default_factory=list)
    max_ulp: float = 0.0
    waived: str = ""
    unchecked: list[str] = field(default_factory=list)

    def raise_to(self, verdict: str, reason: str, category: str = "") -> None:
        self.reasons.append(reason)
        if VERDICTS.index(verdict) > VERDICTS.index(self.verdict):
            self.verdict, self.category = verdict, category
        elif verdict == self.verdict == "BREAK" and category and not self.category:
            self.category = category


def _break_category(result: dict[str, Any]) -> str:
    detail = result.get("detail", "")
    if result["class"] == compat.LOAD:
        if re.search(r"Unknown builtin op|unknown operator|Unknown type name", detail, re.I):
            return "resolve"
        return "load (format version)" if re.search(r"version \d+.*supported|file format", detail, re.I) else "load"
    return {compat.DRIFT: "numerics", compat.CALL: "call", compat.CRASH: "crash"}.get(result["class"], "")


def judge(model: str, f: str, t: str, cells: dict[str, dict[str, Any]]) -> Verdict:
    """One model's verdict for F -> T from the cells' findings."""
    v = Verdict(model, t)
    bad = {compat.LOAD, compat.CALL, compat.CRASH, compat.DRIFT, compat.XPASS}

    def cell(cid: str) -> dict[str, Any] | None:
        c = cells.get(cid)
        if c is None:
            return None
        if c.get("error"):
            v.unchecked.append(f"{cid}: {c['error']}")
            return None
        return c

    cap_f, cap_t = cell(f"capture:{f}"), cell(f"capture:{t}")
    if cap_f and cap_t:
        a, b = cap_f["models"].get(model), cap_t["models"].get(model)
        if a and a["captured"] and (not b or not b["captured"]):
            why = (b or {}).get("error") or cap_t.get("failed", {}).get("*") or "the case is missing from its corpus"
            v.raise_to("BREAK", f"capture: the export fails with torch {t}: {why}", "capture")
        elif b and a:
            for name, why in b["failed_variants"].items():
                if name not in a["failed_variants"]:
                    v.raise_to("BREAK", f"capture: variant {name} no longer captures with torch {t}: {why}",
                               "capture")
            for name in a["failed_variants"]:
                if name not in b["failed_variants"]:
                    v.reasons.append(f"capture: variant {name} captures with torch {t} (it failed with {f})")
        for w in (b or {}).get("warnings", [])[:3]:
            if w not in (a or {}).get("warnings", []):  # what the new version says, not what both say
                v.reasons.append(f"warning at capture with torch {t}: {w}")
    ops = cell(f"ops:{f}->{t}")
    if ops and model in ops["models"]:
        o = ops["models"][model]
        for x in o["findings"]:
            if x["status"] in ("removed", "incompatible"):
                v.raise_to("BREAK", f"resolve: {x['op']} {x['status']} in torch {t}"
                                    + (" (an upgrader covers it)" if x.get("upgrader") else ""), "resolve")
            else:
                v.reasons.append(f"schema of {x['op']} changed in torch {t}, backward compatible")
        for w in o["windows"]:
            v.raise_to("BREAK", f"load (format version): {w}", "load (format version)")
        v.reasons += [n for n in o["notes"] if "deprecated" in n][:3]
    ship = cell(f"ship:{f}->{t}")
    if ship and model in ship["models"]:
        s = ship["models"][model]
        for lang in ("cpp", "python"):
            for r in s[lang]:
                if r["class"] in bad:
                    cat = _break_category(r)
                    if "@aoti" in r["id"] and r["class"] == compat.LOAD:
                        cat = "link"
                    v.raise_to("BREAK", f"ship ({'C++' if lang == 'cpp' else 'Python'} {t}): {r['id']}: "
                                        f"{r['class']}: {r.get('detail', '')[:300]}", cat)
        drift = [r for r in s["runs"] if r.get("compared") and not r.get("bitwise")]
        beyond = [r for r in drift if not r.get("ok")]
        if beyond:
            v.raise_to("BREAK", f"numerics: torch {t}'s outputs differ from torch {f}'s beyond the tolerance: "
                                f"{beyond[0]['id']}: {beyond[0]['detail'][:300]}", "numerics")
        elif drift:
            ulp = max(r["max_ulp"] or 0.0 for r in drift)
            v.max_ulp = max(v.max_ulp, ulp)
            v.raise_to("DRIFT", f"run against run: {len(drift)} results moved within tolerance, up to {ulp:.0f} ULP "
                                f"(max abs {max(r['max_abs'] or 0.0 for r in drift):.3g})")
        for w in s.get("warnings", [])[:5]:
            v.reasons.append(f"warning from torch {t}'s runtime: {w}")
    re_ = cell(f"reexport:{f}->{t}")
    if re_ and model in re_["models"]:
        rs = re_["models"][model]
        for r in rs:
            if r["class"] == compat.DRIFT:
                v.raise_to("BREAK", f"numerics: re-exported with torch {t}, {r['id']}: {r['detail'][:300]}",
                           "numerics")
            elif r["class"] == compat.LOAD:
                v.raise_to("BREAK", f"re-export {r['id']}: {r['detail']}", "capture")
        other_inputs = [r for r in rs if r["class"] == compat.NOT_RUN]
        if other_inputs:
            v.reasons.append(f"re-export: torch {t} drew other inputs for {len(other_inputs)} sets (its random "
                             "number streams differ): their goldens are not compared; run against run compares "
                             "the models on the same inputs")
        moved = [r for r in rs if r["class"] == compat.PASS and not r.get("bitwise")]
        if moved:
            ulp = max((o["max_ulp"] or 0.0) for r in moved for o in r.get("outputs", [])) if any(
                r.get("outputs") for r in moved) else 0.0
            v.max_ulp = max(v.max_ulp, ulp)
            v.raise_to("DRIFT", f"re-export: {len(moved)} goldens moved within tolerance, up to {ulp:.0f} ULP")
    rb = cell(f"rollback:{t}->{f}")
    if rb and model in rb["models"]:
        for lang in ("cpp", "python"):
            for r in rb["models"][model][lang]:
                if r["class"] in bad:
                    v.raise_to("ROLLBACK-UNSAFE", f"rollback ({'C++' if lang == 'cpp' else 'Python'} {f}): "
                                                  f"{r['id']}: {r['class']}: {r.get('detail', '')[:300]}")
    pk = cell(f"packages:{f}<->{t}")
    if pk and model in pk["models"]:
        p = pk["models"][model]
        own = [r for linking in pk.get("linkings", []) for r in p.get(linking, {}).get(f"{t}->{t}", [])]
        if any(r["class"] in bad for r in own):
            bad_own = next(r for r in own if r["class"] in bad)
            v.raise_to("BREAK", f"link: torch {t}'s own AOTInductor packages fail in its runner: {bad_own['id']}: "
                                f"{bad_own.get('detail', '')[:300]}", "link")
        for linking in pk.get("linkings", []):
            for r in p.get(linking, {}).get(f"{f}->{t}", []):
                if r["class"] in bad:
                    v.raise_to("REBUILD-REQUIRED", f"packages: torch {f}'s AOTInductor package fails in torch {t}'s "
                                                   f"runner ({linking}): {r['id']}: {r['class']}: "
                                                   f"{r.get('detail', '')[:300]}")
                    break
            for r in p.get(linking, {}).get(f"{t}->{f}", []):
                if r["class"] in bad:
                    v.reasons.append(f"packages: torch {t}'s AOTInductor packages fail in torch {f}'s runner "
                                     f"({linking}): rebuild them too if you roll back")
                    break
        for w in p.get("warnings", [])[:3]:
            v.raise_to("REBUILD-REQUIRED" if "rebuild" in w.lower() else "PASS", f"warning from the packages: {w}")
    if not v.reasons and v.verdict == "PASS":
        v.reasons.append("bit for bit: the same outputs and goldens under both versions")
    return v


# ---- waivers ------------------------------------------------------------------------------------------------------
def load_waivers(path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--waivers {path}: {e}") from e
    waivers = data.get("waivers") if isinstance(data, dict) else None
    if not isinstance(waivers, list):
        raise UsageError(f"--waivers {path}: expected {{\"waivers\": [{{\"model\", \"verdict\", \"reason\", "
                         "\"expires\"}}, ...]}")
    for w in waivers:
        missing = [k for k in ("model", "verdict", "reason", "expires") if not w.get(k)]
        if missing:
            raise UsageError(f"--waivers {path}: a waiver without {', '.join(missing)}: {w}")
        if w["verdict"] not in VERDICTS[1:]:
            raise UsageError(f"--waivers {path}: verdict {w['verdict']!r} is not one of {VERDICTS[1:]}")
        try:
            datetime.date.fromisoformat(w["expires"])
        except ValueError as e:
            raise UsageError(f"--waivers {path}: expires {w['expires']!r} is not a date (YYYY-MM-DD)") from e
    return waivers


def apply_waivers(verdicts: list[Verdict], waivers: list[dict[str, Any]], today: datetime.date) -> list[str]:
    """Marks the verdicts a live waiver accepts; returns notes on waivers that expired or matched nothing."""
    notes, used = [], set()
    for v in verdicts:
        for i, w in enumerate(waivers):
            if not fnmatch.fnmatch(v.model, w["model"]) or w["verdict"] != v.verdict:
                continue
            if w.get("to") and w["to"] != v.to:
                continue
            used.add(i)
            if datetime.date.fromisoformat(w["expires"]) < today:
                notes.append(f"waiver for {w['model']} ({w['verdict']}) expired on {w['expires']}: it no longer "
                             "applies")
                continue
            v.waived = f"{w['reason']} (until {w['expires']})"
    notes += [f"waiver for {w['model']} ({w['verdict']}) matched no verdict" for i, w in enumerate(waivers)
              if i not in used]
    return notes


def exit_status(verdicts: list[Verdict], unchecked: list[str]) -> int:
    if any(v.verdict not in OK_VERDICTS and not v.waived for v in verdicts):
        return 1
    if unchecked or not verdicts:
        return 2
    return 0


def merge(cells: list[dict[str, Any]], plan_info: dict[str, Any], waivers: list[dict[str, Any]],
          today: datetime.date) -> dict[str, Any]:
    by_id = {c["cell"]: c for c in cells}
    f, tos = plan_info["from"], plan_info["to"]
    models = sorted({m for c in cells for m in c.get("models", {}) if m != "*"})
    verdicts = [judge(m, f, t, by_id) for t in tos for m in models]
    notes = apply_waivers(verdicts, waivers, today)
    unchecked = sorted({u for v in verdicts for u in v.unchecked} |
                       {f"{c['cell']}: {c['error']}" for c in cells if c.get("error")})
    missing = [cid for cid in plan_info.get("cells", []) if cid not in by_id]
    unchecked += [f"{cid}: not run (no cell result)" for cid in missing]
    counts = {k: sum(1 for v in verdicts if v.verdict == k) for k in VERDICTS}
    drift_rows = []
    for c in cells:
        if c["cell"].startswith("reexport:"):
            for results in c["models"].values():
                for r in results:
                    for o in r.get("outputs", []):
                        drift_rows.append({"cell": c["cell"], "id": r["id"], **o})
        if c["cell"].startswith("ship:"):
            for m in c["models"].values():
                for r in m.get("runs", []):
                    for o in r.get("outputs", []):
                        drift_rows.append({"cell": c["cell"] + " (run against run)", "id": r["id"], **o})
    code = exit_status(verdicts, unchecked)
    summary = (f"{len(models)} models, torch {f} -> {', '.join(tos)}: "
               + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
               + (f"; {sum(1 for v in verdicts if v.waived)} waived" if any(v.waived for v in verdicts) else "")
               + (f"; {len(unchecked)} not checked" if unchecked else "") + f" (exit {code})")
    return {"format": "torchconform-upgrade", "format_version": 1, "from": f, "to": tos, "summary": summary,
            "exit_code": code, "verdicts": [v.__dict__ for v in verdicts], "counts": counts,
            "unchecked": unchecked, "waiver_notes": notes, "drift": drift_rows,
            "hardware": cells[0].get("hardware", {}) if cells else {},
            "environments": plan_info.get("environments", {}), "cells": cells,
            "seconds": plan_info.get("seconds")}
