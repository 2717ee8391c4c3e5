#!/usr/bin/env bash
# The real run behind docs/coverage.md: what the generated input sets and `torchconform fuzz` cost and find on
# torchconform's built-in cases and on examples/my_cases.py. For each: export with and without the generated sets
# (sets, bytes, seconds), verify both from C++ (seconds, verdicts), then fuzz every artifact with a fixed seed.
# Writes build/coverage/ and the generated part of docs/coverage.md. Not part of ci/test.sh (test_coverage.py has
# the negative controls there).
#
#   ci/coverage.sh [--examples N] [--budget SECONDS] [--seed N]   (fuzz options; defaults 30, 240, 1)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${TORCHCONFORM_VENV:-$ROOT/.venv}/bin"
OUT="$ROOT/build/coverage"
EXAMPLES=30 BUDGET=240 SEED=1
while [ $# -gt 0 ]; do
  case "$1" in
    --examples) EXAMPLES="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    *) echo "usage: ci/coverage.sh [--examples N] [--budget SECONDS] [--seed N]" >&2; exit 2 ;;
  esac
done
log() { printf '[coverage.sh] %s\n' "$*" >&2; }
ci/build.sh
rm -rf "$OUT" && mkdir -p "$OUT"
now() { date +%s%N; }
ms_since() { echo $(( ($(now) - $1) / 1000000 )); }

measure() {  # name cases-args...
  local name="$1"; shift
  for variant in bounds written; do
    local corpus="$OUT/$name-$variant" flags=()
    [ "$variant" = written ] && flags=(--no-bound-sets)
    log "$name: export ($variant)"
    local t0; t0=$(now)
    "$BIN/torchconform" export "$@" --out "$corpus" --force "${flags[@]}" 2>"$corpus.export.log"
    echo "$name $variant export $(ms_since "$t0")" >>"$OUT/times.txt"
    "$BIN/torchconform" compile "$corpus" --quiet
    t0=$(now)
    "$BIN/torchconform-run" "$corpus" --json "$corpus.json" --quiet >"$corpus.verify.txt" 2>&1 || true
    echo "$name $variant verify $(ms_since "$t0")" >>"$OUT/times.txt"
  done
  log "$name: fuzz (--examples $EXAMPLES --budget $BUDGET --seed $SEED)"
  set +e
  "$BIN/torchconform" fuzz "$OUT/$name-written" "$@" --examples "$EXAMPLES" --budget "$BUDGET" --seed "$SEED" \
    --regressions "$OUT/$name-regressions" >"$OUT/$name.fuzz.txt" 2>"$OUT/$name.fuzz.log"
  echo "$name fuzz fuzz-exit $?" >>"$OUT/times.txt"
  set -e
}
measure builtin
measure examples --cases examples/my_cases.py

"$BIN/python" - "$OUT" "$ROOT/docs/coverage.md" "$EXAMPLES" "$BUDGET" "$SEED" <<'PY'
import json, platform, sys
from pathlib import Path

out, doc = Path(sys.argv[1]), Path(sys.argv[2])
examples, budget, seed = sys.argv[3:6]
times = {}
for line in (out / "times.txt").read_text().splitlines():
    name, variant, what, value = line.split()
    times[(name, variant, what)] = float(value) if what == "fuzz-exit" else float(value) / 1000  # ms

def corpus_facts(path: Path) -> dict:
    sets = generated = left = findings = 0
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    for m in path.glob("*/manifest.json"):
        man = json.loads(m.read_text())
        sets += len(man["input_sets"])
        cov = man.get("coverage", {})
        generated += len(cov.get("generated", []))
        left += len(cov.get("left_out", []))
        findings += len(cov.get("findings", []))
    report = json.loads((path.parent / (path.name + ".json")).read_text())
    verdicts = {}
    for r in report["results"]:
        verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
    bad = [f"{r['case']}{':' + r['artifact'] if r['artifact'] else ''}/{r['input_set']}: {r['verdict']}"
           for r in report["results"] if r["verdict"] not in ("PASS", "XFAIL")]
    return {"sets": sets, "generated": generated, "left": left, "findings": findings, "mb": size / 1e6,
            "verdicts": ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())), "bad": bad}

rows = ["| cases | input sets | generated | left out | eager findings | corpus | export | verify | verdicts |",
        "|---|---|---|---|---|---|---|---|---|"]
notes = []
for name, title in (("builtin", "built-in cases"), ("examples", "examples/my_cases.py")):
    for variant in ("written", "bounds"):
        f = corpus_facts(out / f"{name}-{variant}")
        rows.append(f"| {title}, {'written sets only (--no-bound-sets)' if variant == 'written' else 'with the generated sets'} "
                    f"| {f['sets']} | {f['generated']} | {f['left']} | {f['findings']} | {f['mb']:.1f} MB "
                    f"| {times[(name, variant, 'export')]:.1f} s | {times[(name, variant, 'verify')]:.1f} s "
                    f"| {f['verdicts']} |")
        notes += [f"- {title}: {b}" for b in f["bad"]]
        for m in (out / f"{name}-{variant}").glob("*/manifest.json"):
            man = json.loads(m.read_text())
            for x in man.get("coverage", {}).get("left_out", []):
                notes.append(f"- {title}: {man['case']}: {x['set']} left out: {x['why']}")
            for x in man.get("coverage", {}).get("findings", []):
                notes.append(f"- {title}: {man['case']}: {x}")
fuzz = []
for name, title in (("builtin", "built-in cases"), ("examples", "examples/my_cases.py")):
    lines = (out / f"{name}.fuzz.txt").read_text().splitlines()
    fuzz += [f"**{title}** (exit {int(times[(name, 'fuzz', 'fuzz-exit')])}):", "", "```"]
    fuzz += [ln for ln in lines] + ["```", ""]
generated = "\n".join([
    "<!-- generated by ci/coverage.sh: everything down to the end marker -->",
    "## The run (ci/coverage.sh)", "",
    f"On {platform.machine()} with {platform.python_implementation()} {platform.python_version()}; fuzz with "
    f"`--examples {examples} --budget {budget} --seed {seed}` on the corpus of written sets.", "",
    *rows, "",
    *(["Results other than PASS and XFAIL, what was left out and what the export found:", "", *sorted(set(notes)), ""]
      if notes else []),
    "What fuzz found:", "", *fuzz,
    "<!-- end of ci/coverage.sh's part -->"])
text = doc.read_text()
start, end = text.index("<!-- generated by ci/coverage.sh"), text.index("<!-- end of ci/coverage.sh's part -->")
doc.write_text(text[:start] + generated + text[end + len("<!-- end of ci/coverage.sh's part -->"):])
print(f"written: {doc}")
PY
