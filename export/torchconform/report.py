"""``torchconform report``: a Markdown report of a corpus and its verification, for humans and CI summaries.

Verdicts and statistics come from the C++ runner's JSON report (written by ``_core.verify``); the manifests add
what the export recorded (versions, tracer warnings, hazards, deviations from the spec)."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable


def _num(v: float | None) -> str:
    return "inf" if v is None else f"{v:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_report(corpus: Path, *, results: Path | None = None, device: str = "all", cases: list[str] | None = None,
                    progress: Callable[[str], None] | None = None) -> tuple[str, int]:
    """The report and the verification's exit code (0 pass, 1 mismatch, 2 error)."""
    from . import _core

    corpus = Path(corpus)
    index = _core.Corpus.open(str(corpus))  # hash-checks every manifest before we read them
    if results is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "results.json"
            _core.verify(str(corpus), cases or [], device, 0, 2, str(path), "", out=lambda line: None,
                         progress=progress)
            run = json.loads(path.read_text())
    else:
        run = json.loads(Path(results).read_text())
    code = int(run["summary"]["exit_code"])
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in run["results"]:
        rows[row["case"]].append(row)

    out = [f"# torchconform report: `{corpus}`", ""]
    s = run["summary"]
    status = "PASS" if code == 0 else "FAIL" if code == 1 else "ERROR"
    counts = ", ".join(f"{s.get(k, 0)} {label}" for k, label in (
        ("passed", "passed"), ("failed", "failed"), ("errors", "errors"), ("crashed", "crashed"),
        ("timed_out", "timed out"), ("xfailed", "xfailed"), ("xpassed", "xpassed")))
    out += [f"**{status}**: {counts}.", "",
            f"- exported with torch {index.exported_torch}, python {index.exported_python}",
            f"- verified with LibTorch {run['runtime']['libtorch']}; policy: {run['runtime']['policy']}"]
    if run["runtime"].get("skipped"):
        out.append(f"- {run['runtime']['skipped']}")
    out.append("")
    out += ["| case | mode | input sets | verdicts | max abs | max rel | max ULP | mismatched | tracer warnings |",
            "|---|---|---|---|---|---|---|---|---|"]
    manifests = {}
    for case in index.cases:
        if case.name not in rows:
            continue
        m = json.loads((Path(case.dir) / "manifest.json").read_text())
        manifests[case.name] = m
        r = rows[case.name]
        verdicts = ", ".join(f"{v} {sum(x['verdict'] == v for x in r)}"
                             for v in ("PASS", "FAIL", "ERROR", "CRASH", "TIMEOUT", "XFAIL", "XPASS")
                             if any(x["verdict"] == v for x in r))
        stats = [x for x in r if not x["error"]]

        def worst(key: str, stats: list[dict[str, Any]] = stats) -> str:
            vals = [x[key] for x in stats]
            return "-" if not vals else "inf" if None in vals else _num(max(vals))

        mism = f"{sum(x['mismatched'] for x in stats)}/{sum(x['total'] for x in stats)}" if stats else "-"
        n_warn = sum(w["count"] for w in m["tracer_warnings"])
        out.append(f"| {case.name} | {case.mode} | {len(case.input_sets)} | {verdicts} | {worst('max_abs')} | "
                   f"{worst('max_rel')} | {worst('max_ulp')} | {mism} | {n_warn} |")
    out.append("")

    for name, m in manifests.items():
        env = m["exported_with"]
        out += [f"## {name} ({m['mode']})", "", m["description"] + ".", "",
                f"- model: `{m['model']}`",
                f"- exported with torch {env['torch']}, python {env['python']}, {env['cpu_capability']}, "
                f"{env['threads']} thread(s); {m['export_conditions']['module_mode']} mode, "
                f"grad {m['export_conditions']['grad']}"]
        if m["export_conditions"]["trace_example"]:
            out.append(f"- trace example: `{m['export_conditions']['trace_example']}`")
        out += ["", "| input set | device | verdict | max abs | max rel | max ULP | mismatched | detail |",
                "|---|---|---|---|---|---|---|---|"]
        for x in rows[name]:
            if x["error"]:
                out.append(f"| {x['input_set']} | {x['device']} | {x['verdict']} | | | | | {_cell(x['error'])} |")
                continue
            failing = next((leaf for leaf in x["leaves"] if not leaf["ok"]), None)
            detail = f"{failing['path']}: {failing['message']}" if failing else ""
            out.append(f"| {x['input_set']} | {x['device']} | {x['verdict']} | {_num(x['max_abs'])} | "
                       f"{_num(x['max_rel'])} | {_num(x['max_ulp'])} | {x['mismatched']}/{x['total']} | "
                       f"{_cell(detail)} |")
        out.append("")
        warnings = m["tracer_warnings"]
        out.append(f"**Tracer warnings**: {'none' if not warnings else ''}")
        for w in warnings:
            out.append(f"- {w['count']}× `{w['where']}`: {_cell(w['message'])}")
        for h in m["hazards"]:
            finding = h.get("finding") or h.get("error", "")
            n = sum(w["count"] for w in h["warnings"] if w["category"] == "TracerWarning")
            out.append(f"- hazard **{h['name']}** (`{h['recipe']}`): {h['outcome']}; {finding} "
                       f"({n} tracer warnings)")
        for d in m["spec_deviations"]:
            out.append(f"- deviation from the spec: {d}")
        out.append("")
    return "\n".join(out), code
