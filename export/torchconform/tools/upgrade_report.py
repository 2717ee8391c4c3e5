"""``torchconform upgrade``'s reports of a merged result (tools/upgrade_verdict.py): Markdown for a pull request (the
verdict per model, then the drift per output), JSON (docs/upgrade-schema.json), JUnit (one test per model x cell) and
a plot of the drift per model and version. Every piece of corpus or tool text is escaped for its output kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..text import json_text, markdown, markdown_code, xml
from .upgrade_verdict import OK_VERDICTS


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def markdown_report(result: dict[str, Any]) -> str:
    hw = result["hardware"]
    out = [f"# PyTorch upgrade: torch {markdown(result['from'])} -> {', '.join(markdown(t) for t in result['to'])}",
           "", f"**{markdown(result['summary'])}**", "",
           f"Measured on {markdown(hw.get('cpu', '?'))} ({markdown(hw.get('machine', ''))}, {hw.get('cores')} cores, "
           f"CPU capability {markdown(hw.get('cpu_capability', '?'))}"
           + (", " + ", ".join(f"{markdown(k)}={markdown(v)}" for k, v in hw.get("flags", {}).items())
              if hw.get("flags") else "") + "): drift measured on another CPU can be that CPU's, not torch's.", ""]
    envs_ = result.get("environments", {})
    if envs_:
        out += ["| version | torch | CPU capability | interpreter | runner |", "|---|---|---|---|---|"]
        out += [f"| {markdown(v)} | {markdown(e.get('torch', v))} | {markdown(e.get('cpu_capability') or '?')} | "
                f"{markdown_code(e.get('python', ''))} | {markdown_code(e.get('runner', ''))} |"
                for v, e in envs_.items()] + [""]
    out += ["| model | to | verdict | reasons |", "|---|---|---|---|"]
    for v in result["verdicts"]:
        word = v["verdict"] + (f" ({v['category']})" if v["category"] else "")
        if v["waived"]:
            word += f", waived: {v['waived']}"
        reasons = "; ".join(v["reasons"][:6]) + (f" (+{len(v['reasons']) - 6} more)" if len(v["reasons"]) > 6 else "")
        out.append(f"| {markdown(v['model'])} | {markdown(v['to'])} | **{markdown(word)}** | {markdown(reasons)} |")
    if result["unchecked"]:
        out += ["", "Not checked:", ""] + [f"- {markdown(u)}" for u in result["unchecked"]]
    said = {}  # what a version's export said of every model: once, not in each model's row
    for c in result["cells"]:
        if c["cell"].startswith("capture:") and c.get("warnings"):
            said[c["cell"].split(":", 1)[1]] = c["warnings"]
    if said:
        out += ["", "Warnings of the export itself (every model):", ""]
        out += [f"- torch {markdown(v)}: {markdown(w)}" for v, ws in said.items() for w in ws[:5]]
    if result["waiver_notes"]:
        out += ["", "Waivers:", ""] + [f"- {markdown(n)}" for n in result["waiver_notes"]]
    moved = [d for d in result["drift"] if (d.get("max_abs") or 0) > 0 or not d.get("ok", True)]
    out += ["", f"## Drift per output ({len(moved)} of {len(result['drift'])} moved)", "",
            "| where | result | output | max abs | max rel | max ULP | would pass with rtol / atol | within "
            "tolerance |", "|---|---|---|---|---|---|---|---|"]
    for d in moved[:300]:
        out.append(f"| {markdown(d['cell'])} | {markdown(d['id'])} | {markdown_code(d['path'])} | {_fmt(d['max_abs'])} "
                   f"| {_fmt(d['max_rel'])} | {_fmt(d['max_ulp'])} | {_fmt(d['needed_rtol'])} / "
                   f"{_fmt(d['needed_atol'])} | {'yes' if d.get('ok') else '**no**'} |")
    if len(moved) > 300:
        out.append(f"| ... | {len(moved) - 300} more in upgrade.json | | | | | | |")
    out += ["", "## Cells", "", "| cell | seconds | note |", "|---|---|---|"]
    for c in result["cells"]:
        kept = c.get("reused")
        note = c.get("error") or c.get("assumes") or ""
        if kept:
            note = f"reused: the same inputs as the run at {kept.get('at') or '?'} ({kept.get('seconds', 0):.0f} s)"
        out.append(f"| {markdown(c['cell'])} | {c.get('seconds', 0):.0f} | {markdown(note)} |")
    return "\n".join(out) + "\n"


def junit_report(result: dict[str, Any]) -> str:
    """One test per model x cell: a failure where the cell made the model's verdict worse than DRIFT."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuites name="torchconform upgrade {xml(result["from"])}">']
    for t in result["to"]:
        rows = [v for v in result["verdicts"] if v["to"] == t]
        kinds = ["capture", "ops", "ship", "reexport", "rollback", "packages"]
        failures = 0
        cases = []
        for v in rows:
            for kind in kinds:
                hits = [r for r in v["reasons"] if r.split(":")[0].split(" ")[0] in _REASON_KIND[kind]]
                bad = v["verdict"] not in OK_VERDICTS and not v["waived"] and hits
                failures += bool(bad)
                body = f'<failure message="{xml("; ".join(hits)[:2000])}"/>' if bad else ""
                cases.append(f'  <testcase classname="{xml(v["model"])}" name="{kind} {xml(result["from"])}->'
                             f'{xml(t)}">{body}</testcase>')
        lines.append(f'<testsuite name="torch {xml(result["from"])} -> {xml(t)}" tests="{len(cases)}" '
                     f'failures="{failures}">')
        lines += cases + ["</testsuite>"]
    lines.append("</testsuites>")
    return "\n".join(lines) + "\n"


_REASON_KIND = {"capture": {"capture", "warning"}, "ops": {"resolve", "schema", "load"},
                "ship": {"ship", "run", "numerics"}, "reexport": {"re-export", "numerics"},
                "rollback": {"rollback"}, "packages": {"packages", "link"}}


def plot(result: dict[str, Any], path: Path) -> str:
    """Drift per model and version (max ULP, log scale): "" when written, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed"
    rows = [v for v in result["verdicts"]]
    if not rows:
        return "no plot: no verdict"
    models = sorted({v["model"] for v in rows})
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(models) * len(result["to"])), 4))
    width = 0.8 / max(1, len(result["to"]))
    for i, t in enumerate(result["to"]):
        ulps = [next((v["max_ulp"] for v in rows if v["model"] == m and v["to"] == t), 0) + 1 for m in models]
        ax.bar([j + i * width for j in range(len(models))], ulps, width, label=f"torch {t}")
    ax.set_yscale("log")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(models))], models, rotation=30, ha="right")
    ax.set_ylabel("max ULP moved + 1 (log)")
    ax.set_title(f"drift from torch {result['from']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return ""


def write_reports(result: dict[str, Any], out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "upgrade.json").write_text(json_text(result, indent=1) + "\n")
    (out / "upgrade.md").write_text(markdown_report(result))
    (out / "upgrade.xml").write_text(junit_report(result))
    why = plot(result, out / "upgrade.png")
    return [str(out / n) for n in ("upgrade.md", "upgrade.json", "upgrade.xml")] + \
           ([str(out / "upgrade.png")] if not why else [why])
