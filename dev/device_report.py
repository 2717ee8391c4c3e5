"""docs/device-results.md's measured part, from what ci/device-check.sh brought back (results.tgz or its folder):
the environment, the steps with their times, per corpus and run the verdict counts, per case x artifact x input set
the verdict and max differences on CUDA (TF32 off and on) and on the CPU of that machine, the measured differences
per dtype, the AOTInductor compile times, half precision and sampling.

    python dev/device_report.py RESULTS [--title TEXT] > part.md

Reads the runner's JSON reports as docs/report-schema.json defines them; judges nothing itself.
"""

from __future__ import annotations

import argparse
import json
import re
import tarfile
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

CORPORA = [("golden", "golden/ (committed, exported with torch 2.13)"),
           ("builtin", "the built-in cases exported on the GPU machine"),
           ("examples", "examples/my_cases.py exported on the GPU machine")]
RUNS = [("cuda", "CUDA"), ("cuda-tf32", "CUDA, TF32 on"), ("cpu", "CPU")]


def g(x: float | None) -> str:
    return "-" if x is None else ("0" if x == 0 else f"{x:.3g}")


def load(results: Path) -> Path:
    if results.is_dir():
        return results / "results" if (results / "results").is_dir() else results
    tmp = Path(tempfile.mkdtemp(prefix="device-results-"))
    with tarfile.open(results) as t:
        t.extractall(tmp, filter="data")
    return tmp / "results"


def reports(r: Path) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for corpus, _ in CORPORA:
        for run, _ in RUNS:
            p = r / f"{corpus}-{run}.json"
            if p.exists():
                try:
                    out[(corpus, run)] = json.loads(p.read_text())
                except ValueError as e:
                    print(f"<!-- {p.name}: unreadable: {e} -->")
    return out


def steps(r: Path) -> list[str]:
    lines = ["| step | exit | seconds |", "|---|---|---|"]
    for m in re.finditer(r"^(\S+) exit=(\d+) seconds=(\d+)", (r / "steps.txt").read_text(), re.M):
        lines.append(f"| {m[1]} | {m[2]} | {m[3]} |")
    total = re.search(r"^total: (\d+) s", (r / "steps.txt").read_text(), re.M)
    lines.append("")
    lines.append(f"Wall time of the whole run: {total[1]} s." if total else "The run did not reach its end.")
    return lines


def counts(rep: dict[str, Any]) -> str:
    c = Counter(x["verdict"] for x in rep["results"])
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))


def per_result(reps: dict[tuple[str, str], dict[str, Any]], corpus: str) -> list[str]:
    rows: dict[tuple[str, str, str], dict[str, Any]] = defaultdict(dict)
    for run, _ in RUNS:
        for x in reps.get((corpus, run), {}).get("results", []):
            rows[(x["case"], x.get("artifact") or "", x["input_set"])][run] = x
    if not rows:
        return ["(no report)"]
    out = ["| case | artifact | input set | CUDA | max abs / rel / ULP | CUDA TF32 on | max abs / rel / ULP | CPU |",
           "|---|---|---|---|---|---|---|---|"]

    def cell(x: dict[str, Any] | None) -> tuple[str, str]:
        if x is None:
            return "-", "-"
        v = x["verdict"] + (f" ({x['error_kind']})" if x.get("error_kind") else "")
        d = "-" if x.get("max_abs") is None else f"{g(x['max_abs'])} / {g(x.get('max_rel'))} / {g(x.get('max_ulp'))}"
        return v, d

    for (case, art, s), by in sorted(rows.items()):
        c, cd = cell(by.get("cuda"))
        t, td = cell(by.get("cuda-tf32"))
        p, _ = cell(by.get("cpu"))
        out.append(f"| {case} | {art} | {s} | {c} | {cd} | {t} | {td} | {p} |")
    return out


def problems(reps: dict[tuple[str, str], dict[str, Any]], corpus: str) -> list[str]:
    out = []
    seen = set()
    for run, label in RUNS:
        for x in reps.get((corpus, run), {}).get("results", []):
            if x["verdict"] in ("PASS", "XFAIL"):
                continue
            msg = (x.get("error") or x.get("line") or "").strip().splitlines()
            key = (run, x["case"], x.get("artifact"), msg[0][:200] if msg else "")
            if key in seen:
                continue
            seen.add(key)
            out.append(f"- {label}, `{x['case']}:{x.get('artifact') or ''}/{x['input_set']}` {x['verdict']}: "
                       f"{(msg[0] if msg else '')[:400]}")
    return out


def dtypes(reps: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Max differences per output dtype over every compared leaf of the runs that executed (PASS or FAIL)."""
    agg: dict[tuple[str, str], dict[str, float]] = {}
    for (_corpus, run), rep in reps.items():
        for x in rep["results"]:
            if x["verdict"] not in ("PASS", "FAIL", "XFAIL"):
                continue
            seeded = "sample" in x["input_set"]
            for leaf in x.get("leaves") or []:
                if leaf.get("max_abs") is None or not leaf.get("dtype"):
                    continue
                key = (run, leaf["dtype"] + (" (seeded sampling)" if seeded else ""))
                a = agg.setdefault(key, {"abs": 0.0, "rel": 0.0, "ulp": 0.0, "leaves": 0, "bad": 0})
                a["abs"] = max(a["abs"], leaf["max_abs"])
                a["rel"] = max(a["rel"], leaf.get("max_rel") or 0.0)
                a["ulp"] = max(a["ulp"], leaf.get("max_ulp") or 0.0)
                a["leaves"] += 1
                a["bad"] += 0 if leaf.get("ok") else 1
    out = ["| run | dtype | leaves | leaves outside the tolerance | max abs | max rel | max ULP |",
           "|---|---|---|---|---|---|---|"]
    for (run, dt), a in sorted(agg.items()):
        out.append(f"| {dict(RUNS)[run]} | {dt} | {a['leaves']} | {a['bad']} | {g(a['abs'])} | {g(a['rel'])} | "
                   f"{g(a['ulp'])} |")
    return out


def compiles(r: Path) -> list[str]:
    out = ["| corpus | program | device | seconds |", "|---|---|---|---|"]
    for log in sorted(r.glob("*-compile-*.log")):
        corpus = log.name.split("-compile-")[0]
        for m in re.finditer(r"\] (\S+) for (\w+): compiled in ([0-9.]+) s", log.read_text()):
            out.append(f"| {corpus} | {m[1]} | {m[2]} | {m[3]} |")
        for m in re.finditer(r"^torchconform compile: error: (.*)$", log.read_text(), re.M):
            out.append(f"| {corpus} | (error) {m[1][:300]} | | |")
    return out


def measures(r: Path) -> list[str]:
    out = []
    for corpus in ("golden", "builtin"):
        p = r / f"{corpus}-measure.json"
        if not p.exists():
            continue
        m = json.loads(p.read_text())
        out += ["", f"**{corpus}: half precision on CUDA** (artifact cast to the dtype, golden rounded to it, "
                    "that dtype's default tolerance)", "",
                "| case | input set | dtype | within default tolerance | max abs | max rel | max ULP | note |",
                "|---|---|---|---|---|---|---|---|"]
        for h in m["half_precision"]:
            note = h.get("error") or (f"{h['mismatched']}/{h['total']} outside" if not h.get("ok") else "")
            out.append(f"| {h['case']} | {h['set']} | {h['dtype']} | {'yes' if h.get('ok') else 'no'} | "
                       f"{g(h.get('max_abs'))} | {g(h.get('max_rel'))} | {g(h.get('max_ulp'))} | {note[:200]} |")
        out += ["", f"**{corpus}: seeded sampling on CUDA**", "",
                "| case | input set | same seed twice on CUDA identical | positions differing from the CPU golden | "
                "CPU again = golden | TV distance CUDA vs CPU (max / mean) | TV distance CPU vs CPU, other seeds "
                "(max / mean) | samples per position |", "|---|---|---|---|---|---|---|---|"]
        for s in m["sampling"]:
            if "error" in s:
                out.append(f"| {s['case']} | {s['set']} | error: {s['error'][:200]} | | | | | |")
                continue
            out.append(f"| {s['case']} | {s['set']} | {s.get('cuda_same_seed_reproducible')} | "
                       f"{s.get('cuda_vs_cpu_golden_mismatched')}/{s.get('total')} | {s.get('cpu_matches_golden')} | "
                       f"{g(s.get('tv_cuda_vs_cpu_max'))} / {g(s.get('tv_cuda_vs_cpu_mean'))} | "
                       f"{g(s.get('tv_cpu_vs_cpu_max'))} / {g(s.get('tv_cpu_vs_cpu_mean'))} | "
                       f"{s.get('samples_per_position', '-')} |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", type=Path)
    args = ap.parse_args()
    r = load(args.results)
    reps = reports(r)
    out = ["## Environment", "", "```", (r / "environment.txt").read_text().strip(), "```", "",
           "## Steps", ""] + steps(r)
    out += ["", "## Verdicts per corpus and run", "", "| corpus | run | runtime | verdicts |", "|---|---|---|---|"]
    for corpus, label in CORPORA:
        for run, rl in RUNS:
            rep = reps.get((corpus, run))
            if rep:
                rt = rep.get("runtime") or {}
                out.append(f"| {label} | {rl} | LibTorch {rt.get('libtorch')}; {rt.get('policy')} | {counts(rep)} |")
    out += ["", "## Measured differences per output dtype", "",
            "Over every compared leaf (tensor or scalar) of the runs that executed; the verdicts use the corpus "
            "tolerance (assert_close's per-dtype defaults unless a case sets its own).", ""] + dtypes(reps)
    out += ["", "## AOTInductor compile times (on the GPU machine)", ""] + compiles(r)
    for corpus, label in CORPORA:
        out += ["", f"## {label}: per case, artifact and input set", ""] + per_result(reps, corpus)
        p = problems(reps, corpus)
        if p:
            out += ["", "Everything that did not pass, first line of each message:", ""] + p
    out += ["", "## Half precision and sampling on CUDA (dev/device_measure.py)"] + measures(r)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
