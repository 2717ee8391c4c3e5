"""Mutation testing of the verifier: hundreds of corrupted copies of a real corpus, verified in one run.

Usage (the pytest test runs the same thing, bounded):
    python tests/python/mutation.py --runner build/cpp_runner/torchconform-run [--count 600] [--seed 1]

Each mutated case is a copy of a golden case (hard links for untouched files) with one mutation:
- unsigned: a bit flip, truncation, inserted or deleted bytes in the artifact, an inputs/expected file or the
  manifest, hashes left as they were. The hash chain must catch every one of them (ERROR), even a change that
  leaves the content equivalent.
- re-signed: the same kinds of damage to data files, or inputs/expected files swapped in from another case, with the
  manifest hashes updated -- what a hostile corpus can do. These reach the unpickler, the runner and the comparator.
  An independent oracle (a separate Python process: torch.load(weights_only=True), torch.jit.load,
  torch.testing.assert_close) says whether the mutated set still matches; a PASS where the oracle says otherwise is a
  false PASS.
- corpus.json: damaged in place, each verified on its own.
Results: counts by outcome; the run fails on any false PASS, on any case without a result (the parent must always
report), and on a runner process that dies.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import GOLDEN, sha256  # noqa: E402

KINDS = ("bitflip", "truncate", "insert", "delete")


def damage(data: bytes, kind: str, rng: random.Random) -> bytes:
    if not data:
        return b"\x00"
    pos = rng.randrange(len(data))
    if kind == "bitflip":
        return data[:pos] + bytes([data[pos] ^ (1 << rng.randrange(8))]) + data[pos + 1:]
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[pos:]
    return data[:pos] + data[pos + rng.randint(1, 16):]  # delete


def clone_case(src: Path, dst: Path, name: str) -> dict[str, Any]:
    """Hard-linked copy of a case directory under another case name; returns its manifest (renamed)."""
    shutil.copytree(src, dst, copy_function=os.link)
    mpath = dst / "manifest.json"
    m = json.loads(mpath.read_text())
    m["case"] = name
    mpath.unlink()  # never write through a hard link into the golden corpus
    mpath.write_text(json.dumps(m, indent=1))
    return m


def replace(path: Path, data: bytes) -> None:
    path.unlink()  # break the hard link first
    path.write_bytes(data)


def build(out: Path, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    golden = json.loads((GOLDEN / "corpus.json").read_text())
    sources = [c["name"] for c in golden["cases"]]
    plan: list[dict[str, Any]] = []
    index = []
    for i in range(count):
        src = rng.choice(sources)
        name = f"m{i:04d}_{src}"
        m = clone_case(GOLDEN / src, out / name, name)
        sets = m["input_sets"]
        signed = rng.random() < 0.35
        kind = rng.choice((*KINDS, "swap")) if signed else rng.choice(KINDS)
        entry: dict[str, Any] = {"case": name, "source": src, "kind": kind, "signed": signed}
        if kind == "swap":  # inputs or expected of a set taken from another case's set
            s = rng.choice(sets)
            role = rng.choice(("inputs", "expected"))
            other = rng.choice([x for x in sources if x != src])
            om = json.loads((GOLDEN / other / "manifest.json").read_text())
            os_ = rng.choice(om["input_sets"])
            replace(out / name / s[role]["file"], (GOLDEN / other / os_[role]["file"]).read_bytes())
            entry.update(target=s[role]["file"], set=s["name"], role=role, swapped_from=f"{other}/{os_['name']}")
        else:
            if signed:
                s = rng.choice(sets)
                role = rng.choice(("inputs", "expected"))
                target = s[role]["file"]
                entry.update(set=s["name"], role=role)
            else:
                target = rng.choice(["artifact.pt", "manifest.json",
                                     *[v["file"] for v in m.get("variants", []) if "file" in v],
                                     *[s[r]["file"] for s in sets for r in ("inputs", "expected")]])
            path = out / name / target
            original = path.read_bytes()
            mutated = damage(original, kind, rng)
            while mutated == original:
                mutated = damage(original, kind, rng)
            replace(path, mutated)
            entry["target"] = target
        mpath = out / name / "manifest.json"
        if signed:  # re-sign: the manifest vouches for the damaged file
            m = json.loads(mpath.read_text())
            for s in m["input_sets"]:
                for role in ("inputs", "expected"):
                    s[role]["sha256"] = sha256(out / name / s[role]["file"])
            mpath.write_text(json.dumps(m, indent=1))
        # corpus.json vouches for the manifest as written before an unsigned manifest mutation, else as it is now
        manifest_hash = sha256(mpath) if entry.get("target") != "manifest.json" or signed else None
        if manifest_hash is None:
            pristine = json.loads((GOLDEN / src / "manifest.json").read_text())
            pristine["case"] = name
            manifest_hash = _hash_text(json.dumps(pristine, indent=1))
        index.append({"name": name, "manifest": f"{name}/manifest.json", "sha256": manifest_hash})
        plan.append(entry)
    (out / "corpus.json").write_text(json.dumps({**golden, "cases": index}, indent=1))
    return plan


def _hash_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


ORACLE = r'''
import json, sys, torch
from torchconform.corpus import apply_prelude, call
from torchconform.registry import Call, InputSet
root, jobs = sys.argv[1], json.loads(sys.stdin.read())
def same(e, a):
    if type(e) is not type(a) and not (isinstance(e, torch.Tensor) and isinstance(a, torch.Tensor)):
        return False
    if isinstance(e, torch.Tensor):
        try:
            torch.testing.assert_close(a, e, equal_nan=True)
            return True
        except AssertionError:
            return False
    if isinstance(e, (tuple, list)):
        return len(e) == len(a) and all(same(x, y) for x, y in zip(e, a))
    if isinstance(e, dict):
        return e.keys() == a.keys() and all(same(e[k], a[k]) for k in e)
    if isinstance(e, float):
        try:
            torch.testing.assert_close(a, e)
            return True
        except AssertionError:
            return False
    return e == a
verdicts = {}
for case, set_name in jobs:
    try:
        m = json.load(open(f"{root}/{case}/manifest.json"))
        s = next(x for x in m["input_sets"] if x["name"] == set_name)
        args = torch.load(f"{root}/{case}/{s['inputs']['file']}", weights_only=True)
        expected = torch.load(f"{root}/{case}/{s['expected']['file']}", weights_only=True)
        if not isinstance(args, tuple):
            raise TypeError("inputs are not a tuple")
        module = torch.jit.load(f"{root}/{case}/{m['artifact']['file']}")
        module.eval()
        spec = InputSet(set_name, args, "", seed=s["seed"],
                        prelude=tuple(Call(c["method"], tuple(c["args"])) for c in s["prelude"]))
        with torch.inference_mode():
            apply_prelude(module, spec)
            ok = all(same(expected, call(module, spec)) for _ in range(2))
        verdicts[f"{case}/{set_name}"] = "match" if ok else "mismatch"
    except Exception as e:  # undecodable, wrong arity, the model raised...
        verdicts[f"{case}/{set_name}"] = "error: " + type(e).__name__
print(json.dumps(verdicts))
'''


def corpus_json_mutations(runner: Path, work: Path, count: int, rng: random.Random) -> Counter[str]:
    """Damage corpus.json itself (unsigned: nothing vouches for it but its own validity) and verify each copy."""
    outcomes: Counter[str] = Counter()
    original = (GOLDEN / "corpus.json").read_bytes()
    for i in range(count):
        d = work / f"cj{i}"
        d.mkdir()
        for c in json.loads(original)["cases"]:
            (d / c["name"]).symlink_to(GOLDEN / c["name"])  # read-only views of the golden cases
        mutated = damage(original, rng.choice(KINDS), rng)
        (d / "corpus.json").write_bytes(mutated)
        # Strict decoding: the runner must print valid UTF-8 whatever bytes the corpus holds.
        r = subprocess.run([str(runner), str(d), "--quiet"], capture_output=True, text=True, timeout=300)
        if r.returncode == 0:
            outcomes["corpus.json: FALSE PASS"] += 1
        elif r.returncode < 0:
            outcomes["corpus.json: runner died"] += 1
        else:
            outcomes[f"corpus.json: exit {r.returncode}"] += 1
    return outcomes


def run(runner: Path, count: int, seed: int, corpus_json: int = 20, keep: Path | None = None) -> dict[str, Any]:
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="torchconform-mutation-"))
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        plan = build(corpus, count, seed)
        report = work / "report.json"
        r = subprocess.run([str(runner), str(corpus), "--json", str(report), "--quiet", "--timeout", "120"],
                           capture_output=True, text=True, timeout=3000)
        if r.returncode < 0 or not report.exists():
            raise SystemExit(f"the runner itself died (status {r.returncode}):\n{r.stderr[-3000:]}")
        rows = json.loads(report.read_text())["results"]
        by_case: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_case.setdefault(row["case"], []).append(row)

        jobs = [(e["case"], e["set"]) for e in plan if e["signed"]]
        oracle = subprocess.run([sys.executable, "-c", ORACLE, str(corpus)], input=json.dumps(jobs),
                                capture_output=True, text=True, timeout=3000)
        if oracle.returncode != 0:
            raise SystemExit(f"the oracle process died (status {oracle.returncode}): {oracle.stderr[-3000:]}")
        truth = json.loads(oracle.stdout)

        outcomes: Counter[str] = Counter()
        false_pass, missing = [], []
        for e in plan:
            results = by_case.get(e["case"])
            if not results:
                missing.append(e)
                continue
            label = ("re-signed " if e["signed"] else "") + e["kind"]
            if e["signed"]:
                # Every artifact run on the set (TorchScript, variants, exported programs) read the damaged file.
                rows_ = [x for x in results if x["input_set"] == e["set"]] or results[:1]  # "*": failed as a whole
                verdict = rows_[0]["verdict"]
                oracle_says = truth.get(f"{e['case']}/{e['set']}", "error: not run")
                outcomes[f"{label}: {verdict} (oracle {oracle_says.split(':')[0]})"] += 1
                if oracle_says != "match" and any(x["verdict"] == "PASS" for x in rows_):
                    false_pass.append({**e, "oracle": oracle_says})
            else:
                verdicts = {x["verdict"] for x in results}
                outcomes[f"{label}: {'/'.join(sorted(verdicts))}"] += 1
                # The hash chain must stop the file that was touched: every result when it is the manifest, the
                # results of the artifact or variant whose file it is ("variants/<name>.pt[2]"), else the results
                # of the set the inputs/expected file belongs to ("sets/<set>.<role>.pt"), on every artifact.
                if e["target"] == "manifest.json":
                    touched = results
                elif e["target"] == "artifact.pt":
                    touched = [x for x in results if x["artifact"] == ""]
                elif e["target"].startswith("variants/"):
                    name = Path(e["target"]).name.split(".")[0]
                    touched = [x for x in results if x["artifact"].split("@")[0] == name]
                else:
                    touched = [x for x in results if x["input_set"] in (Path(e["target"]).name.split(".")[0], "*")]
                if not touched or any(x["verdict"] == "PASS" for x in touched):
                    false_pass.append(e)
        outcomes.update(corpus_json_mutations(runner, work, corpus_json, random.Random(seed + 1)))
        total = count + corpus_json
        summary = {
            "seed": seed, "mutations": total, "seconds": round(time.monotonic() - t0, 1),
            "runner_exit": r.returncode, "false_pass": len(false_pass), "missing_results": len(missing),
            "crashed": sum(1 for row in rows if row["verdict"] == "CRASH"),
            "runner_died": sum(v for k, v in outcomes.items() if "runner died" in k) + (r.returncode < 0),
            "corpus_json_false_pass": outcomes.get("corpus.json: FALSE PASS", 0),
            "outcomes": dict(sorted(outcomes.items())), "false_pass_details": false_pass[:10],
            "missing_details": missing[:10],
        }
        return summary
    finally:
        if keep:
            shutil.copytree(work, keep, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runner", type=Path, default=Path(__file__).resolve().parents[2] / "build" / "cpp_runner"
                    / "torchconform-run")
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="keep the mutated corpus and report here")
    args = ap.parse_args()
    summary = run(args.runner, args.count, args.seed, keep=args.keep)
    print(json.dumps(summary, indent=2))
    bad = (summary["false_pass"] + summary["missing_results"] + summary["runner_died"]
           + summary["corpus_json_false_pass"] + summary["crashed"])
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
