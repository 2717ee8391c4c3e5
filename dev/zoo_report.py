"""Writes docs/zoo.md from a ci/zoo.sh run: per model and artifact the verdicts, the largest differences, and for
every result that is not a PASS its class: a PyTorch limitation (a strict expected failure declared in
dev/zoo_cases.py, with PyTorch's message) or a torchconform problem (anything else: the zoo's target is none).

    python dev/zoo_report.py OUT_DIR docs/zoo.md --verify-rc N --plugin-rc N --seconds S
"""

from __future__ import annotations

import argparse
import json
import platform
from collections import defaultdict
from pathlib import Path

import torch

import torchconform
from torchconform import _core


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("doc", type=Path)
    ap.add_argument("--verify-rc", type=int, required=True)
    ap.add_argument("--plugin-rc", type=int, required=True)
    ap.add_argument("--seconds", type=int, required=True)
    a = ap.parse_args()

    rows = json.loads((a.out / "report.json").read_text())["results"]
    corpus = _core.Corpus.open(str(a.out / "corpus"))
    exported = [c.name for c in corpus.cases]
    export_log = (a.out / "export.log").read_text()
    failed_export = [ln.split("] ", 1)[1].split(":")[0] for ln in export_log.splitlines()
                     if ln.startswith("[") and ": FAILED: " in ln]

    by = defaultdict(list)
    for r in rows:
        by[(r["case"], r["artifact"] or "(artifact)")].append(r)
    verdicts = defaultdict(int)
    for r in rows:
        verdicts[r["verdict"]] += 1
    ours = [r for r in rows if r["verdict"] not in ("PASS", "XFAIL")]
    plugin = a.out / "plugin.txt"
    plugin_summary = plugin.read_text().strip().splitlines()[-1] if plugin.exists() else "not run"

    out = ["# The model zoo", "",
           "Real models as users bring them, exported, compiled and verified by `ci/zoo.sh` (cases: "
           "`dev/zoo_cases.py`; random weights, small inputs, nothing downloaded). This page is written by that run "
           "(`dev/zoo_report.py`); do not edit it by hand. The scripted detection models call torchvision's "
           "operators: the C++ runner gets them with `--load-library` (the pip wheel's library is a Python "
           "extension, so libpython and libtorch_python are loaded before it; a C++ deployment builds torchvision's "
           "C++ library instead), `compile` with `--import torchvision`.", "",
           f"- torch {torch.__version__}, torchconform {torchconform.__version__}, Python {platform.python_version()}"
           f", {platform.machine()}; run took {a.seconds} s",
           f"- {len(exported)} cases exported ({len(failed_export)} failed to export"
           + (f": {', '.join(failed_export)}" if failed_export else "") + f"), {len(rows)} results: "
           + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())),
           f"- `torchconform-run` exit {a.verify_rc}; the pytest plugin exit {a.plugin_rc} ({plugin_summary})",
           f"- results that are torchconform's fault (not PASS, not a declared PyTorch limitation): **{len(ours)}**",
           "", "| model | artifact | runtime | sets | verdicts | max abs | max ULP | class of each non-PASS |",
           "|---|---|---|---|---|---|---|---|"]
    for (case, artifact), rs in sorted(by.items()):
        counts = defaultdict(int)
        for r in rs:
            counts[r["verdict"]] += 1
        compared = [r for r in rs if r.get("max_abs") is not None and r["verdict"] in ("PASS", "FAIL", "XPASS")]
        max_abs = max((r["max_abs"] for r in compared), default=None)
        max_ulp = max((r["max_ulp"] or 0 for r in compared), default=None)
        classes = sorted({f"PyTorch limitation: {r['xfail_reason']}" if r["verdict"] == "XFAIL"
                          else f"**torchconform**: {r['verdict']} {r.get('error') or ''}".strip()
                          for r in rs if r["verdict"] != "PASS"})
        out.append(f"| {case} | {artifact} | {rs[0]['runtime']} | {len(rs)} | "
                   f"{', '.join(f'{n} {v}' for v, n in sorted(counts.items()))} | "
                   f"{'-' if max_abs is None else f'{max_abs:.3g}'} | {'-' if max_ulp is None else int(max_ulp)} | "
                   f"{cell('; '.join(c[:300] for c in classes)) or '-'} |")
    weak = [(c.name, s["name"], why) for c in corpus.cases for s in json.loads(c.manifest_json)["input_sets"]
            for why in s.get("degenerate", [])]
    if weak:
        out += ["", "## Goldens that check little", "",
                "Random weights give some models outputs so small or so uniform that a comparison says little (the "
                "export warns; a PASS on these is weak evidence). A zoo with trained weights would not have them.", ""]
        out += [f"- {case}/{name}: {cell(why)}" for case, name, why in weak]
    refused = sorted({f"{c.name}:{v.name}" for c in corpus.cases for v in c.variants
                      if v.file and len(v.input_sets) < len(c.input_sets)})
    if refused:
        out += ["", "## Programs checked on fewer sets", "",
                "Captured with static shapes, these programs run only the sets they were captured for "
                "(`tc.Export(input_sets=...)`); given another set the runner refuses the call (a guard would fail) "
                "rather than run AOTInductor's code out of bounds: " + ", ".join(refused) + "."]
    if failed_export:
        out += ["", "## Failed to export", ""]
        for ln in export_log.splitlines():
            if ": FAILED: " in ln:
                out.append(f"- {cell(ln.split('] ', 1)[1])}")
    a.doc.write_text("\n".join(out) + "\n")
    print(f"wrote {a.doc}: {len(rows)} results, {len(ours)} not PASS or a declared limitation")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
