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
- semantic (re-signed, hostile.py): neg/conj views, storage records longer or shorter than declared, dict keys that
  print alike, loosened tolerances and overrides that match nothing, hand-written pickles (memo bombs, deep and
  self-containing containers, expanded and out-of-bounds views), malicious pickles in data files, artifacts and
  exported programs; path tricks (links out of and within the corpus, FIFOs, /dev/zero, wrong declared sizes,
  26,000-character names, NUL in file names, control and bidirectional characters). Each has a rule: judged by the
  oracle, refused (never PASS), or loosened (a PASS only with its LOOSENED mark).
- corpus.json: damaged in place, each verified on its own.
The Python faces (report, compile, the compat probe, the pytest plugin) then run on a sample of the semantic cases.
Results: counts by outcome; the run fails on any false PASS, any code executed (a marker file some payloads create
if they ever run), any case without a result, any process that dies and any that hangs past its timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile  # noqa: E402
from conftest import GOLDEN, TC, rehash, sha256, tc  # noqa: E402

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


def build(out: Path, count: int, seed: int, index: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Byte damage, unsigned and re-signed (appends the cases to ``index``)."""
    rng = random.Random(seed)
    golden = json.loads((GOLDEN / "corpus.json").read_text())
    sources = [c["name"] for c in golden["cases"]]
    plan: list[dict[str, Any]] = []
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
    return plan


# How each semantic mutation is judged: "oracle" (a PASS only where the independent oracle matches), "refuse" (no
# PASS for the set, or the whole case when no set is named), "loosened" (a PASS only with its LOOSENED mark, and an
# override that matches nothing must FAIL).
RULES = {"neg_view": "oracle", "dict_keys": "oracle", "record_size": "refuse", "malicious_data": "refuse",
         "handmade_pickle": "refuse", "tolerance": "loosened", "link_out": "refuse", "link_in": "oracle",
         "dev_zero": "refuse", "fifo_data": "refuse", "declared_size": "refuse", "long_name": "refuse",
         "nul_name": "refuse", "control_text": "oracle", "malicious_pt2": "refuse", "malicious_artifact": "refuse",
         "fifo_manifest": "refuse", "empty_goldens": "refuse", "side_effect_artifact": "refuse",
         "legacy_pickle_pt2": "refuse", "huge_envelope": "envelope", "repeated_json_key": "refuse",
         "fifo_artifact": "refuse"}
PT2_KINDS = ("malicious_pt2", "legacy_pickle_pt2")  # drawn only from cases that have an exported program
EVIL_TEXT = "\x1b[2K\rPASS  forged/line [cpu]\x07\n## heading\n| a |\u009b31m\u202eSSAP\u2028\u200b"


def _path_trick(kind: str, corpus: Path, case: str, m: dict[str, Any], s: dict[str, Any], role: str,
                outside: Path, marker: Path) -> dict[str, Any]:
    """One path or manifest trick on ``case`` (a copy); returns what the plan records. The manifest is re-signed by
    the caller (except where the trick is to make it unreadable)."""
    path = corpus / case / s[role]["file"]
    if kind == "link_out":  # a perfectly good copy of the file, outside the corpus: following it would PASS
        target = outside / f"{case}-{path.name}"
        target.write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(target)
    elif kind == "link_in":
        shared = corpus / "_shared"
        shared.mkdir(exist_ok=True)
        target = shared / f"{case}-{path.name}"
        target.write_bytes(path.read_bytes())
        path.unlink()
        path.symlink_to(target)
    elif kind == "dev_zero":
        path.unlink()
        path.symlink_to("/dev/zero")
    elif kind == "fifo_data":
        path.unlink()
        os.mkfifo(path)
    elif kind == "declared_size":
        rehash(corpus, case, index=False)
        m = json.loads((corpus / case / "manifest.json").read_text())
        s = next(x for x in m["input_sets"] if x["name"] == s["name"])
        s[role]["bytes"] = s[role].get("bytes", path.stat().st_size) + 1
        (corpus / case / "manifest.json").write_text(json.dumps(m, indent=1))
        return {"set": s["name"], "resigned": "manifest only"}
    elif kind == "long_name":
        m["input_sets"][0]["method"] = "a" * 26000
        (corpus / case / "manifest.json").write_text(json.dumps(m, indent=1))
        return {"set": None, "resigned": "manifest only"}
    elif kind == "nul_name":
        s[role]["file"] += "\x00.ignored"
        (corpus / case / "manifest.json").write_text(json.dumps(m, indent=1))
        return {"set": None, "resigned": "manifest only"}
    elif kind == "control_text":
        m["description"] = EVIL_TEXT
        for v in m.get("variants", []):
            if v.get("xfail"):
                v["xfail"]["reason"] = EVIL_TEXT
        (corpus / case / "manifest.json").write_text(json.dumps(m, indent=1))
        return {"set": s["name"], "resigned": "manifest only"}
    elif kind == "malicious_pt2":
        program = next(v for v in m["variants"] if v.get("file", "").endswith(".pt2"))
        hostile.replace_record(corpus / case / program["file"], "/data/sample_inputs/model.pt",
                               lambda d: hostile.malicious_torch_save(marker))
        return {"set": None, "artifact_prefix": program["name"]}
    elif kind == "malicious_artifact":
        artifact = corpus / case / m["artifact"]["file"]
        hostile.replace_record(artifact, "/data.pkl", lambda d: hostile.malicious_raw_pickle(marker))
        return {"set": None, "artifact": ""}
    elif kind == "fifo_manifest":
        mpath = corpus / case / "manifest.json"
        mpath.unlink()
        os.mkfifo(mpath)
        return {"set": None, "resigned": "no"}
    elif kind == "fifo_artifact":
        artifact = corpus / case / m["artifact"]["file"]
        artifact.unlink()
        os.mkfifo(artifact)
        return {"set": None, "artifact": "", "resigned": "no"}
    elif kind == "repeated_json_key":
        # A loose tolerance written before the real one: a first-wins reader would use it, a last-wins one not.
        text = json.dumps(m, indent=1)
        loose = '"tolerance": {"default": {"mode": "allclose", "atol": 1e9}, "outputs": {}},'
        (corpus / case / "manifest.json").write_text("{" + loose + text[1:])
        return {"set": None, "resigned": "manifest only"}
    return {"set": s["name"]}


def build_semantic(out: Path, count: int, seed: int, index: list[dict[str, Any]], outside: Path,
                   marker: Path) -> list[dict[str, Any]]:
    """Re-signed semantic attacks and path tricks (appends the cases to ``index``)."""
    rng = random.Random(seed)
    golden = json.loads((GOLDEN / "corpus.json").read_text())
    sources = [c["name"] for c in golden["cases"]]
    plan: list[dict[str, Any]] = []
    kinds = sorted(RULES)
    for i in range(count):
        kind = kinds[i % len(kinds)] if i < len(kinds) else rng.choice(kinds)  # every kind at least once
        candidates = [c for c in sources if kind not in PT2_KINDS or any(
            v.get("file", "").endswith(".pt2") and (kind != "legacy_pickle_pt2" or hostile.has_weights(
                GOLDEN / c / v["file"])) for v in json.loads((GOLDEN / c / "manifest.json").read_text())
            .get("variants", []))]
        src = rng.choice(candidates)
        name = f"s{i:04d}_{src}"
        m = clone_case(GOLDEN / src, out / name, name)
        s = rng.choice(m["input_sets"])
        role = rng.choice(("inputs", "expected"))
        entry: dict[str, Any] = {"case": name, "source": src, "kind": kind, "rule": RULES[kind], "set": s["name"],
                                 "role": role, "signed": True, "semantic": True}
        if kind in hostile.ATTACKS:
            entry["what"] = hostile.ATTACKS[kind](out, name, s["name"], role, marker, rng)
            if kind == "tolerance":
                entry["role"] = "expected"  # the golden that was moved
            # What the attack touched, so that only those results must be refused (a variant of a case whose
            # TorchScript artifact was replaced still passes on its own file).
            if kind == "side_effect_artifact":
                entry.update({"set": None, "artifact": ""})
            if kind == "legacy_pickle_pt2":
                program = next(v for v in m["variants"] if v.get("file", "").endswith(".pt2"))
                entry.update({"set": None, "artifact_prefix": program["name"]})
            rehash(out, name, index=False)
        else:
            entry.update(_path_trick(kind, out, name, m, s, role, outside, marker))
            if entry.get("resigned", "yes") == "yes":
                rehash(out, name, index=False)
        mpath = out / name / "manifest.json"
        digest = sha256(mpath) if mpath.is_file() else "0" * 64
        index.append({"name": name, "manifest": f"{name}/manifest.json", "sha256": digest})
        plan.append(entry)
    return plan


def _hash_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


ORACLE = r'''
import json, sys, torch
from torchconform.writing.writer import apply_prelude, call
from torchconform.authoring.case import Call, InputSet
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


CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def covers(e: dict[str, Any], artifact: str, set_name: str) -> bool:
    """Whether a result (artifact, input set) of the mutated case reads what the mutation touched."""
    if e.get("set") and set_name not in (e["set"], "*"):
        return False
    if "artifact" in e and artifact != e["artifact"]:
        return False
    return "artifact_prefix" not in e or artifact.split("@")[0] == e["artifact_prefix"]


def judge_semantic(e: dict[str, Any], results: list[dict[str, Any]], truth: dict[str, str]) -> tuple[str, bool]:
    """(outcome label, whether it is a false PASS) for one semantic mutation, by its rule."""
    rows = [x for x in results if covers(e, x["artifact"], x["input_set"])]
    if not rows and e.get("set") and "artifact" not in e and "artifact_prefix" not in e:
        rows = results  # the case failed as a whole ("*")
    verdicts = "/".join(sorted({x["verdict"] for x in rows})) or "no row"
    passed = [x for x in rows if x["verdict"] == "PASS"]
    if e["rule"] == "refuse":
        return f"semantic {e['kind']}: {verdicts}", bool(passed) or not rows
    if e["rule"] == "envelope":
        # The golden moved far beyond the tolerance under an enormous envelope: a FAIL, never "within" it.
        within = [x for x in rows if x["verdict"] != "PASS" and (x.get("envelope") or {}).get("within")]
        return f"semantic {e['kind']}: {verdicts}", bool(passed) or bool(within) or not rows
    if e["rule"] == "loosened":
        # A PASS is what the manifest asked for, but it must say so; an override that matches nothing fails.
        plain = [x for x in passed if not x["loosened"] and "LOOSENED" not in x["line"]]
        unmatched = "unmatched" in e.get("what", "") and bool(passed)
        return f"semantic {e['kind']}: {verdicts}", bool(plain) or unmatched
    oracle_says = truth.get(f"{e['case']}/{e['set']}", "error: not run")
    label = f"semantic {e['kind']}: {verdicts} (oracle {oracle_says.split(':')[0]})"
    return label, oracle_says != "match" and bool(passed)


def python_faces(corpus: Path, work: Path, plan: list[dict[str, Any]], rows: list[dict[str, Any]], report: Path,
                 marker: Path, timeout: float, thorough: bool = True) -> dict[str, Any]:
    """The Python faces on the mutated corpus (report) and on a sample of its semantic cases (compile, the compat
    probe, the pytest plugin): none may die, hang, run the payloads or pass what the rules refuse."""
    faces: dict[str, Any] = {"problems": [], "runs": 0}
    py = list(TC)

    def call(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str] | None:
        faces["runs"] += 1
        try:  # (the torchconform command as the tests run it: forked where it can be, conftest.tc)
            done = tc(*cmd[len(py):], timeout=timeout, **kw) if cmd[:len(py)] == py else \
                subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
        except subprocess.TimeoutExpired:
            faces["problems"].append(f"hang: {' '.join(cmd[2:5])}")
            return None
        if done.returncode < 0 or "Traceback" in done.stderr:
            faces["problems"].append(f"died: {' '.join(cmd[2:5])} ({done.returncode}): {done.stderr[-500:]}")
        return done

    done = call([*py, "report", str(corpus), "--results", str(report), "--out", str(work / "report.md")])
    if done is not None and done.returncode not in (1, 2):
        faces["problems"].append(f"report exited {done.returncode} on a corpus with mutations")
    if (work / "report.md").exists() and CONTROL.search((work / "report.md").read_text()):
        faces["problems"].append("report.md holds a raw control or bidirectional character")

    done = call([*py, "tolerances", str(corpus), "--results", str(report)])
    if done is not None and CONTROL.search(done.stdout + done.stderr):
        faces["problems"].append("tolerances printed a raw control or bidirectional character")
    done = call([*py, "bundle-check", str(corpus), "--results", str(report)])
    if done is not None and (done.returncode == 0 or CONTROL.search(done.stdout + done.stderr)):
        faces["problems"].append(f"bundle-check exited {done.returncode} or printed raw text on a mutated corpus")

    refused = {e["case"]: e for e in plan if e.get("rule") == "refuse"}
    for e in [e for e in plan if e.get("kind") in PT2_KINDS][:4]:
        done = call([*py, "compile", str(corpus), "--case", e["case"], "--aoti-cache", str(work / "aoti")])
        if done is not None and done.returncode != 2:
            faces["problems"].append(f"compile accepted {e['case']} (exit {done.returncode})")
        done = call([*py, "localize", str(corpus), "--case", e["case"]])
        if done is not None and done.returncode != 2:
            faces["problems"].append(f"localize accepted {e['case']} (exit {done.returncode})")

    if not thorough:  # (the default tier's sample: the probe and the plugin have dedicated tests there)
        if marker.exists():
            faces["problems"].append("a payload ran: the marker file exists")
        return faces
    # A sample corpus for the probe and the plugin (FIFOs left out: copying one would wait for a writer).
    sample = work / "sample"
    sample.mkdir()
    chosen = [e for e in plan if e.get("semantic") and "fifo" not in e["kind"]][:14]
    for e in chosen:
        shutil.copytree(corpus / e["case"], sample / e["case"], symlinks=True)
    if (corpus / "_shared").exists():
        shutil.copytree(corpus / "_shared", sample / "_shared")
        for e in chosen:  # links within the corpus point at the copy's shared files
            for link in (sample / e["case"]).rglob("*"):
                if link.is_symlink() and "_shared" in os.readlink(link):
                    target = sample / "_shared" / Path(os.readlink(link)).name
                    link.unlink()
                    link.symlink_to(target)
    index = json.loads((corpus / "corpus.json").read_text())
    index["cases"] = [c for c in index["cases"] if c["name"] in {e["case"] for e in chosen}]
    (sample / "corpus.json").write_text(json.dumps(index, indent=1))
    # The compat Python column: the probe loads, calls and saves in another process; this one judges with the core.
    from torchconform.tools import compat

    faces["runs"] += 1
    cell = compat.run_python_cell(compat.Runtime("this", sys.executable, "", torch.__version__), sample, timeout)
    for r in cell["results"]:
        head, _, set_name = r["id"].rpartition("/")
        case, _, artifact = head.partition(":")
        e = refused.get(case)
        if r["class"] == compat.PASS and e and covers(e, artifact, set_name):
            faces["problems"].append(f"compat Python column passed {r['id']} ({e['kind']})")
        if r["class"] == compat.CRASH:
            faces["problems"].append(f"compat Python column: {r['detail']}")
    # The pytest plugin, as it is, and under pytest-xdist (each worker verifies its own items' cases).
    for xdist in ([], ["-n", "2", "--dist", "loadgroup"]):
        done = call([sys.executable, "-m", "pytest", f"--torchconform-corpus={sample}", "-q", "-rA",
                     "-p", "no:cacheprovider", "-o", "addopts=", "--torchconform-timeout", "120", *xdist], cwd=work)
        if done is None:
            continue
        if done.returncode not in (0, 1):
            faces["problems"].append(f"pytest plugin{' under xdist' if xdist else ''} exited {done.returncode}: "
                                     f"{done.stdout[-500:]}")
        if CONTROL.search(done.stdout + done.stderr):
            faces["problems"].append(f"pytest plugin{' under xdist' if xdist else ''} printed raw text")
        for line in done.stdout.splitlines():
            m = re.match(r"PASSED (s\d+_\w+)(?::([\w@]+))?\[(\w+)-cpu\]", line)
            e = refused.get(m.group(1)) if m else None
            if e and covers(e, m.group(2) or "", m.group(3)):
                faces["problems"].append(f"pytest plugin passed {line.strip()} ({e['kind']})")
    if marker.exists():
        faces["problems"].append("a payload ran: the marker file exists")
    return faces


SHARDS = 2  # the machine's cores: each runner process runs its cases one at a time, on one thread


def run_sharded(runner: Path, corpus: Path, names: list[str], report: Path, timeout: float,
                limit: float) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """The runner on the mutated corpus as SHARDS processes side by side (each ``--case``-selects every SHARDS-th
    case, on one thread), their results merged in corpus order into ``report`` (what the Python faces read: the
    summary's counts summed, the worst exit status); the returned process carries every shard's output."""
    procs = []
    for k in range(SHARDS):
        out = report.with_name(f"report-{k}.json")
        picks = [a for n in names[k::SHARDS] for a in ("--case", n)]
        cmd = [str(runner), str(corpus), *picks, "--json", str(out), "--quiet", "--threads", "1", "--timeout",
               str(timeout)]
        # Output to files, not pipes: a shard blocked on a full pipe would wait for the one read first.
        logs = (out.with_suffix(".stdout"), out.with_suffix(".stderr"))
        with logs[0].open("w") as o, logs[1].open("w") as e:
            procs.append((subprocess.Popen(cmd, stdout=o, stderr=e), out, logs))
    # The whole run's limit: the runner's own per-case timeouts must end any case long before it.
    deadline = time.monotonic() + limit
    done, docs, rows = [], [], []
    for proc, out, logs in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as e:
            for p, _, _ in procs:
                p.kill()
            raise SystemExit(f"the runner hung on the mutated corpus (no end within {limit} s)") from e
        stdout, stderr = (path.read_text(errors="replace") for path in logs)
        if proc.returncode < 0 or not out.exists():
            raise SystemExit(f"the runner itself died (status {proc.returncode}):\n{stderr[-3000:]}")
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
        docs.append(json.loads(out.read_text()))
        rows += docs[-1]["results"]
    order = {n: i for i, n in enumerate(names)}
    rows.sort(key=lambda row: order.get(row["case"], len(order)))  # stable: each case's rows keep their order
    summary = {k: (max if k == "exit_code" else sum)(d["summary"][k] for d in docs) for k in docs[0]["summary"]}
    report.write_text(json.dumps({**docs[0], "results": rows, "summary": summary}))
    worst = max(done, key=lambda d: d.returncode)
    merged = subprocess.CompletedProcess(worst.args, worst.returncode, "".join(d.stdout for d in done),
                                         "".join(d.stderr for d in done))
    return merged, rows


def run(runner: Path, count: int, seed: int, corpus_json: int = 20, semantic: int = 0, faces: str = "all",
        keep: Path | None = None, timeout: float = 120) -> dict[str, Any]:
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="torchconform-mutation-"))
    marker = work / "PAYLOAD-RAN"
    outside = work / "outside"
    outside.mkdir()
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        index: list[dict[str, Any]] = []
        plan = build(corpus, count, seed, index)
        plan += build_semantic(corpus, semantic, seed + 2, index, outside, marker)
        golden = json.loads((GOLDEN / "corpus.json").read_text())
        (corpus / "corpus.json").write_text(json.dumps({**golden, "cases": index}, indent=1))
        report = work / "report.json"
        t_run = time.monotonic()
        r, rows = run_sharded(runner, corpus, [c["name"] for c in index], report, timeout,
                              limit=900 + (count + semantic) // 2)
        run_seconds = time.monotonic() - t_run
        by_case: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_case.setdefault(row["case"], []).append(row)

        jobs = [(e["case"], e["set"]) for e in plan if e["signed"] and e.get("rule", "oracle") == "oracle"]
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
            if e.get("semantic"):
                label, bad = judge_semantic(e, results, truth)
                outcomes[label] += 1
                if bad:
                    false_pass.append(e)
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
        raw_output = bool(CONTROL.search(r.stdout + r.stderr))
        face_report = python_faces(corpus, work, plan, rows, report, marker, timeout * 3, faces == "all") \
            if faces != "none" and semantic \
            else {"problems": [], "runs": 0}
        outcomes.update(corpus_json_mutations(runner, work, corpus_json, random.Random(seed + 1)))
        total = count + semantic + corpus_json
        summary = {
            "seed": seed, "mutations": total, "semantic": semantic, "seconds": round(time.monotonic() - t0, 1),
            "runner_seconds": round(run_seconds, 1), "runner_exit": r.returncode,
            "false_pass": len(false_pass), "missing_results": len(missing),
            "crashed": sum(1 for row in rows if row["verdict"] == "CRASH"),
            "timed_out": sum(1 for row in rows if row["verdict"] == "TIMEOUT"),
            "runner_died": sum(v for k, v in outcomes.items() if "runner died" in k) + (r.returncode < 0),
            "corpus_json_false_pass": outcomes.get("corpus.json: FALSE PASS", 0),
            "code_executed": int(marker.exists()),
            "raw_control_characters_in_output": int(raw_output),
            "python_face_runs": face_report["runs"], "python_face_problems": face_report["problems"],
            "face_hangs": sum(1 for p in face_report["problems"] if p.startswith("hang")),
            "outcomes": dict(sorted(outcomes.items())), "false_pass_details": false_pass[:10],
            "missing_details": missing[:10],
        }
        return summary
    finally:
        if keep:
            shutil.copytree(work, keep, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def failures(summary: dict[str, Any]) -> int:
    """What makes a mutation run fail: every count that must be zero."""
    return (summary["false_pass"] + summary["missing_results"] + summary["runner_died"] + summary["crashed"]
            + summary["timed_out"] + summary["corpus_json_false_pass"] + summary["code_executed"]
            + summary["raw_control_characters_in_output"] + len(summary["python_face_problems"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runner", type=Path, default=Path(__file__).resolve().parents[2] / "build" / "cpp_runner"
                    / "torchconform-run")
    ap.add_argument("--count", type=int, default=600, help="byte-damage mutations")
    ap.add_argument("--semantic", type=int, default=150, help="semantic mutations and path tricks")
    ap.add_argument("--no-faces", action="store_true", help="skip the Python faces (report, compile, probe, plugin)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="keep the mutated corpus and report here")
    args = ap.parse_args()
    summary = run(args.runner, args.count, args.seed, semantic=args.semantic, faces="none" if args.no_faces else "all",
                  keep=args.keep)
    print(json.dumps(summary, indent=2))
    return 1 if failures(summary) else 0


if __name__ == "__main__":
    raise SystemExit(main())
