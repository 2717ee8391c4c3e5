"""``torchconform report``: a Markdown report of a corpus and its verification, for humans and CI summaries.

Verdicts and statistics come from the C++ runner's JSON report (``_core.verify``'s document, or a ``--json`` file);
the manifests add
what the export recorded (versions, tracer warnings, hazards, deviations from the spec)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from .. import verification
from ..errors import CorpusInputError
from ..text import json_text
from ..text import markdown as _cell
from ..text import markdown_code as _code


def _num(v: float | None) -> str:
    return "inf" if v is None else f"{v:.3g}"


def _short(text: str, limit: int = 300) -> str:
    """A long message's start (the JSON keeps all of it): a table row stays readable."""
    return text if len(text) <= limit else text[:limit] + " …"


def _ms(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v * 1000:.3g}"


def _median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None and v == v)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _node_changes(before: dict[str, int], after: dict[str, int]) -> str:
    changed = [f"{k} {before.get(k, 0)}→{after.get(k, 0)}" for k in sorted({*before, *after})
               if before.get(k, 0) != after.get(k, 0)]
    return ", ".join(changed) if changed else "no change"


def _timing(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Load time (one per artifact and process), and the medians over input sets of the first and steady calls."""
    return {"load_s": _median([r["load_seconds"] for r in rows]),
            "first_call_s": _median([r["first_call_seconds"] for r in rows]),
            "steady_s": _median([r["steady_seconds"] for r in rows])}


def _runtime_stats(ex: list[dict[str, Any]]) -> dict[str, Any]:
    """One runtime's results for one program and device: verdict counts, errors, agreement with TorchScript, times."""
    if not ex:
        return {"ran": False}
    ok = [r for r in ex if not r["error"]]
    agree = [r["vs_artifact"] for r in ok if r.get("vs_artifact")]
    worst = lambda key: max((a[key] for a in agree), default=None,  # noqa: E731
                            key=lambda x: float("inf") if x is None else x)
    return {"ran": True,
            "verdicts": {k: sum(r["verdict"] == k for r in ex) for k in {r["verdict"] for r in ex}},
            "errors": sorted({r["error"] for r in ex if r["error"]}),
            "sets": len(ex),
            "max_abs_vs_torchscript": worst("max_abs"),
            "max_ulp_vs_torchscript": worst("max_ulp"),
            "timing": _timing(ok)}


def _executorch_of(program: dict[str, Any], variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ExecuTorch programs lowered from ``program`` (export --executorch; by name for corpora written before
    ``lowered_from``)."""
    return [v for v in variants if v["kind"] == "executorch_program" and
            v.get("lowered_from", v["name"].rsplit("_et", 1)[0]) == program["name"]]


def migration(manifests: dict[str, dict[str, Any]], rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per case and device: TorchScript vs torch.export (and the ExecuTorch programs lowered from it), from the
    manifests (what export did) and the C++ results (agreement and timings, measured by the runner in the same
    process for all of them)."""
    out = []
    for name, m in manifests.items():
        programs = [v for v in m.get("variants", []) if v["kind"] == "exported_program"]
        if not programs:
            out.append({"case": name, "exportable": None, "reason": "no torch.export variant declared"})
            continue
        for v in programs:
            entry: dict[str, Any] = {"case": name, "variant": v["name"], "exportable": "file" in v,
                                     "transform": v["transform"], "findings": v.get("findings", []),
                                     "has_torchscript": "artifact" in m}
            if "file" not in v:
                entry["reason"] = v.get("error", "")
                entry["expected_failure"] = v.get("xfail", {}).get("reason")
                out.append(entry)
                continue
            entry["details"] = v.get("details", {})
            lowered = _executorch_of(v, m.get("variants", []))
            entry["executorch"] = [{"variant": e["name"], "lowered": "file" in e, "transform": e["transform"],
                                    **({"reason": e.get("error", "")} if "file" not in e else {})} for e in lowered]
            devices = sorted({r["device"] for r in rows.get(name, [])})
            entry["devices"] = {}
            for device in devices:
                mine = [r for r in rows[name] if r["device"] == device]
                ts = [r for r in mine if r["artifact"] == "" and not r["error"]]
                per_runtime = {rt: _runtime_stats([r for r in mine if r["artifact"] == f"{v['name']}@{rt}"])
                               for rt in v.get("runtimes", [])}
                for e in lowered:
                    key = f"executorch ({e['name']})"
                    per_runtime[key] = (_runtime_stats([r for r in mine if r["artifact"] == f"{e['name']}@executorch"])
                                        if "file" in e else
                                        {"ran": False, "not_lowered": e.get("error", "")})
                sets = set(v.get("input_sets") or [r["input_set"] for r in ts])
                entry["devices"][device] = {"torchscript": _timing([r for r in ts if r["input_set"] in sets]),
                                            "runtimes": per_runtime}
            out.append(entry)
    return out


def migration_markdown(mig: list[dict[str, Any]], runtimes: dict[str, Any]) -> list[str]:
    out = ["## TorchScript → torch.export migration", "",
           "Per model: can torch.export capture it, does the exported program run from C++ (AOTInductor, and "
           "ExecuTorch where the corpus holds its lowerings: export --executorch) and agree with the "
           "TorchScript artifact shipped today (same inputs, same process), and what it costs. Times are medians "
           "over the input sets both ran (load: once per artifact). The TorchScript artifact is the first thing "
           "each case's process loads, so its load time includes LibTorch's one-time JIT start-up.", ""]
    avail = ", ".join(f"{_cell(k)}: {'yes' if v['available'] else 'no (' + _cell(v['detail']) + ')'}"
                      for k, v in runtimes.items())
    out += [f"Runtimes of this runner: {avail}.", "",
            "| case | program | exportable | runtime | device | verdicts | max abs / ULP vs TorchScript | "
            "load ms (TS / export) | first call ms (TS / export) | steady ms (TS / export) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for e in mig:
        if not e["exportable"]:
            why = e.get("reason", "")
            if e.get("expected_failure"):
                why += f" (expected failure: {e['expected_failure']})"
            out.append(f"| {e['case']} | {e.get('variant', '-')} | no: {_cell(_short(why))} | | | | | | | |")
            continue
        for device, d in e["devices"].items():
            ts = d["torchscript"]
            for rt, r in d["runtimes"].items():
                if not r["ran"]:
                    why = ("ExecuTorch cannot lower it: " + _cell(_short(r["not_lowered"])) if "not_lowered" in r
                           else "runtime unavailable")
                    out.append(f"| {e['case']} | {e['variant']} | yes | {_cell(rt)} | {device} | not run ({why}) "
                               "| | | | |")
                    continue
                t = r["timing"]
                verdicts = ", ".join(f"{k} {n}" for k, n in sorted(r["verdicts"].items()))
                if not e.get("has_torchscript", True):  # mode "export": nothing to agree with
                    agree = "- (no TorchScript artifact)"
                elif r["max_abs_vs_torchscript"] is not None or r["verdicts"].get("PASS"):
                    agree = f"{_num(r['max_abs_vs_torchscript'])} / {_num(r['max_ulp_vs_torchscript'])}"
                else:
                    agree = "-"
                out.append(f"| {e['case']} | {e['variant']} | yes | {_cell(rt)} | {device} | {verdicts} | {agree} | "
                           f"{_ms(ts['load_s'])} / {_ms(t['load_s'])} | {_ms(ts['first_call_s'])} / "
                           f"{_ms(t['first_call_s'])} | {_ms(ts['steady_s'])} / {_ms(t['steady_s'])} |")
    out.append("")
    for e in mig:
        for f in e.get("findings", []):
            out.append(f"- {e['case']}: {_cell(f)}")
    out.append("")
    return out


def _load_run(path: Path) -> dict[str, Any]:
    try:
        run = json.loads(Path(path).read_text())
        if not isinstance(run, dict) or not isinstance(run.get("results"), list) or "summary" not in run:
            raise CorpusInputError("not a torchconform JSON report (no summary/results)")
        return run
    except (OSError, ValueError, RecursionError) as e:
        raise CorpusInputError(f"{path}: unreadable results file: {e}") from None


def _manifest(case: Any) -> dict[str, Any]:
    """The case's manifest as the C++ reader verified it (hash, schema, depth), never read from disk again; {} for a
    case whose manifest was refused (its error is in the results)."""
    return json.loads(case.manifest_json) if case.manifest_json else {}


def markdown_report(corpus: Path, *, results: Path | None = None, device: str = "all", cases: list[str] | None = None,
                    progress: Callable[[str], None] | None = None, aoti_cache: str = "",
                    json_out: Path | None = None) -> tuple[str, int]:
    """The report and the verification's exit code (0 pass, 1 mismatch, 2 error). ``json_out``: also write the
    migration and optimization tables as JSON. Every piece of corpus text is escaped (``_cell``, ``_code``)."""
    from .. import _core

    corpus = Path(corpus)
    index = _core.Corpus.open(str(corpus))  # hash-checks every manifest before we read them
    if results is None:
        args = [str(corpus), "--device", device, *[a for c in cases or [] for a in ("--case", c)]]
        _, _, run = verification.run(args + (["--aoti-cache", aoti_cache] if aoti_cache else []), progress=progress)
    else:
        run = _load_run(results)
    code = int(run["summary"]["exit_code"])
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in run["results"]:
        rows[row["case"]].append(row)

    out = _headline(corpus, index, run, code)
    table, manifests = _case_table(index, rows)
    out += table + _weak_goldens(rows)
    for case in index.cases:
        if case.error and case.name in rows:
            out += [f"## {case.name} (manifest refused)", "", f"{_cell(case.error)}", ""]
    for name, m in manifests.items():
        out += _case_section(name, m, rows[name])
    mig = migration(manifests, rows)
    out += migration_markdown(mig, run.get("runtimes", {}))
    if json_out is not None:
        Path(json_out).write_text(json_text({"corpus": str(corpus), "runtime": run["runtime"],
                                              "runtimes": run.get("runtimes", {}), "migration": mig}, indent=2)
                                  + "\n")
    return "\n".join(out), code


def _headline(corpus: Path, index: Any, run: dict[str, Any], code: int) -> list[str]:
    """The verdict, the counts, and what the corpus was exported and verified with."""
    s = run["summary"]
    out = [f"# torchconform report: {_code(corpus)}", ""]
    status = {0: "PASS", 1: "FAIL", 3: "NOTHING VERIFIED (expected failures only)"}.get(code, "ERROR")
    counts = ", ".join(f"{s.get(k, 0)} {label}" for k, label in (
        ("passed", "passed"), ("failed", "failed"), ("errors", "errors"), ("crashed", "crashed"),
        ("timed_out", "timed out"), ("xfailed", "xfailed"), ("xpassed", "xpassed")))
    loosened = s.get("loosened", 0)
    out += [f"**{status}**: {counts}." + (f" **{loosened} of the passes were checked under a LOOSENED tolerance** "
                                          "(see the tolerance notes below)." if loosened else "")
            + (" **Nothing was verified**: no result compared an output with its golden." if s.get("verified") == 0
               else ""), "",
            f"- exported with torch {_cell(index.exported_torch)}, python {_cell(index.exported_python)}",
            f"- corpus.json SHA-256 {_code(index.index_sha256)} (pin it out of band: nothing in the corpus vouches "
            "for it)",
            f"- verified with LibTorch {_cell(run['runtime']['libtorch'])}"
            + (f", CPU capability {_cell(run['runtime']['cpu_capability'])}" if "cpu_capability" in run["runtime"]
               else "") + f"; policy: {_cell(run['runtime']['policy'])}"]
    if run["runtime"].get("skipped"):
        out.append(f"- {_cell(run['runtime']['skipped'])}")
    out.append("")
    return out


def _case_table(index: Any, rows: dict[str, list[dict[str, Any]]]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """One row per case that has results, and the manifests of those cases (by name)."""
    out = ["| case | mode | input sets | artifacts | verdicts | max abs | max rel | max ULP | mismatched | "
           "tracer warnings |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    manifests = {}
    for case in index.cases:
        if case.name not in rows:
            continue
        m = _manifest(case)
        if m:
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
        n_warn = sum(w.get("count", 0) for w in m.get("tracer_warnings", []))
        n_artifacts = len({x["artifact"] for x in r})
        out.append(f"| {case.name} | {case.mode or '-'} | {len(case.input_sets)} | {n_artifacts} | {verdicts} | "
                   f"{worst('max_abs')} | {worst('max_rel')} | {worst('max_ulp')} | {mism} | {n_warn} |")
    out.append("")
    return out, manifests


def _weak_goldens(rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Goldens that check little, judged by the runner from the goldens' values (each leaf's `weak`), not from what a
    manifest says about them."""
    weak = sorted({(x["case"], x["input_set"], leaf["path"], leaf["weak"]) for r in rows.values() for x in r
                   if x["artifact"] == "" for leaf in x.get("leaves", []) if leaf.get("weak")})
    if not weak:
        return []
    return [f"**Goldens that check little** ({len(weak)}): a PASS on these says less than it seems (a runtime "
            "returning zeros or a constant would pass too). A case that means them declares "
            "`allow_degenerate=True`.", ""] + [f"- {_cell(name)}/{_cell(set_name)}: {_cell(path)}: {_cell(why)}"
                                                for name, set_name, path, why in weak] + [""]


def _case_section(name: str, m: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    """A case's section: how it was exported, a row per result, its variants, its tracer warnings and hazards."""
    env = m.get("exported_with", {})
    cond = m.get("export_conditions") or {}
    exported = f"- exported with torch {_cell(env.get('torch', '?'))}, python {_cell(env.get('python', '?'))}"
    if "cpu_capability" in env:
        exported += f", {_cell(env['cpu_capability'])}"
    if "threads" in env:
        exported += f", {_cell(env['threads'])} thread(s)"
    if cond:
        exported += (f"; {_cell(cond.get('module_mode', '?'))} mode, grad {_cell(cond.get('grad', '?'))}")
    # (names and modes are schema-checked: no escaping)
    out = [f"## {name} ({m.get('mode', '?')})", "", _cell(m.get("description", "")) + ".", ""]
    if m.get("model"):
        out.append(f"- model: {_code(m['model'])}")
    out.append(exported)
    if cond.get("trace_example"):
        out.append(f"- trace example: {_code(cond['trace_example'])}")
    out += ["", "| artifact | input set | device | verdict | max abs | max rel | max ULP | mismatched | "
            "would pass with (rtol / atol / ULP) | vs artifact (max abs / ULP) | detail |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    out += [_result_row(x) for x in results] + [""]
    return out + _variant_lines(m) + _warning_lines(m)


def _result_row(x: dict[str, Any]) -> str:
    art = x["artifact"] or "TorchScript"  # artifact and set names are schema-checked: no escaping
    if x["error"]:
        return f"| {art} | {x['input_set']} | {x['device']} | {x['verdict']} | | | | | | | {_cell(x['error'])} |"
    failing = next((leaf for leaf in x["leaves"] if not leaf["ok"]), None)
    vs = x.get("vs_artifact")
    if failing is None and vs:
        failing = next((leaf for leaf in vs["leaves"] if not leaf["ok"]), None)
    detail = f"{failing['path']}: {failing['message']}" if failing else ""
    # A tolerance other than the dtype's default is part of what the verdict means (runner.cpp prints it too).
    notes = [n for n in (x.get("tolerance_note", ""), (vs or {}).get("tolerance_note", "")) if n]
    loc = x.get("localization") or {}
    if loc.get("first_divergence"):
        notes.append(f"first diverging submodule: {loc['first_divergence']}")
    elif loc.get("note") and x["verdict"] == "FAIL":
        notes.append(f"localize: {loc['note']}")
    detail = "; ".join([d for d in (detail, *dict.fromkeys(notes)) if d])
    agree = f"{_num(vs['max_abs'])} / {_num(vs['max_ulp'])}" if vs else ""
    # The minimum tolerance that would have passed (each alone, the others as they are).
    needed = f"{_num(x['needed_rtol'])} / {_num(x['needed_atol'])} / {_num(x['max_ulp'])}"
    return (f"| {art} | {x['input_set']} | {x['device']} | {x['verdict']} | {_num(x['max_abs'])} | "
            f"{_num(x['max_rel'])} | {_num(x['max_ulp'])} | {x['mismatched']}/{x['total']} | {needed} | "
            f"{agree} | {_cell(detail)} |")


def _variant_lines(m: dict[str, Any]) -> list[str]:
    if not m.get("variants"):
        return []
    out = ["**Variants** (graph node counts against the TorchScript artifact's):", ""]
    for v in m["variants"]:
        mark = f" — expected to fail: {_cell(v['xfail']['reason'])}" if v.get("xfail") else ""
        if "file" not in v:
            out.append(f"- {_code(v['name'])} ({v['kind']}): {_code(v['transform'])} failed at export: "
                       f"{_cell(v.get('error', ''))}{mark}")
        else:
            counts_v = v.get("graph_node_counts", {})
            nodes = (_node_changes(m.get("graph_node_counts", {}), counts_v)
                     if v["kind"] == "torchscript" else f"{sum(counts_v.values())} ATen calls")
            out.append(f"- {_code(v['name'])} ({v['kind']}): {_code(v['transform'])}; nodes: "
                       f"{_cell(nodes)}{mark}")
        for f in v.get("findings", []):
            out.append(f"  - {_cell(f)}")
    return out + [""]


def _warning_lines(m: dict[str, Any]) -> list[str]:
    warnings = m.get("tracer_warnings", [])
    out = [f"**Tracer warnings**: {'none' if not warnings else ''}"]
    for w in warnings:
        out.append(f"- {_cell(w.get('count', '?'))}× {_code(w.get('where', '?'))}: {_cell(w.get('message', ''))}")
    for h in m.get("hazards", []):
        finding = h.get("finding") or h.get("error", "")
        n = sum(w.get("count", 0) for w in h.get("warnings", []) if w.get("category") == "TracerWarning")
        recipe = f" ({_code(h['recipe'])})" if h.get("recipe") else ""
        out.append(f"- hazard **{_cell(h.get('name', '?'))}**{recipe}: {_cell(h.get('outcome', '?'))}; "
                   f"{_cell(finding)} ({n} tracer warnings)")
    for d in m.get("spec_deviations", []):
        out.append(f"- deviation from the spec: {_cell(d)}")
    out.append("")
    return out
