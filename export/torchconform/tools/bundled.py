"""``torchconform bundle-check``: ExecuTorch's own bundled-program check against torchconform's verdicts.

``torchconform export --bundled`` writes every ExecuTorch program of a corpus also as a BundledProgram (``.bpte``):
the program with the case's input sets and goldens as ExecuTorch's test cases, which a device runs with ExecuTorch's
check and no torchconform (``BundledModule.verify_result_with_bundled_expected_output``: load test case i, execute,
compare with its expected outputs at one rtol/atol). This command runs that check on every bundle of a corpus and sets
it beside the C++ runner's verdict on the same program and input set: they must agree, pass for pass and fail for
fail. A disagreement means one of the two checks is wrong about this program.

ExecuTorch's check runs in a child process (a hostile or broken ``.bpte`` that crashes ExecuTorch's runtime is
reported, not fatal), which hashes the bytes it hands to ExecuTorch against the manifest first and checks that they
are this corpus's program, input sets and goldens (rebuilt from the corpus's hash-checked files, the bundle is the
same bytes): a stale or forged bundle is never checked. The runner's verdicts
come from a ``torchconform-run --json`` report (``--results``) or from running ``torchconform-run`` on the bundled
programs' results.

Exit status: 0 every bundled result agrees; 1 a disagreement, a bundle that fails its hash, is not the corpus's or
crashes ExecuTorch, or a case whose manifest cannot be read; 2 nothing to check (no bundle in the corpus) or bad
usage."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

BUNDLE_LIMIT = 1 << 30  # bytes: a .bpte holds one program and its test cases


@dataclass
class Bundle:
    case: str
    variant: str
    path: str
    sha256: str
    sets: list[str]
    rtol: float
    atol: float
    case_dir: str
    entry: dict[str, Any]          # the variant's manifest entry
    set_records: list[dict[str, Any]]  # the case's input-set records


def plan(corpus: Path) -> tuple[list[Bundle], list[str], list[str]]:
    """The corpus's bundles (from manifests the C++ reader hash-checked); one line per ExecuTorch program that has
    no bundle, with why; one line per case whose manifest could not be read (its bundles, if any, go unchecked)."""
    from .. import _core

    opened = _core.Corpus.open(str(corpus))
    bundles, unbundled, unreadable = [], [], []
    for case in opened.cases:
        if case.error:
            unreadable.append(f"{case.name}: {case.error}")
            continue
        manifest = json.loads(case.manifest_json)
        for v in manifest.get("variants", []):
            if v["kind"] != "executorch_program":
                continue
            b = v.get("bundled")
            if "file" not in v:
                unbundled.append(f"{case.name}:{v['name']}: not lowered ({v.get('error', '')})")
            elif b is None:
                unbundled.append(f"{case.name}:{v['name']}: no bundle (exported without --bundled)")
            elif "file" not in b:
                unbundled.append(f"{case.name}:{v['name']}: {b.get('error', 'no bundle')}")
            else:
                missing = [k for k in ("sha256", "input_sets", "rtol", "atol") if not b.get(k) and b.get(k) != 0]
                if missing:
                    raise ValueError(f"{case.name}:{v['name']}: the bundle record has a file but no "
                                     f"{', '.join(missing)}")
                root = Path(case.dir).resolve()
                path = (root / b["file"]).resolve()
                if root not in path.parents:  # the schema's relpath already refuses this; never trust one check
                    raise ValueError(f"{case.name}:{v['name']}: bundle path {b['file']!r} leaves the case directory")
                bundles.append(Bundle(case.name, v["name"], str(path), b["sha256"], list(b["input_sets"]),
                                      float(b["rtol"]), float(b["atol"]), str(root), v, manifest["input_sets"]))
    return bundles, unbundled, unreadable


def _child_main() -> int:
    """In the child: read the bundles as JSON on stdin, run ExecuTorch's check on each test case, print one JSON line
    per result (flushed, so a crash keeps what came before)."""
    from executorch.extension.pybindings import portable_lib

    from ..writing.executorch import bundle_bytes, test_cases

    def emit(b: Bundle, input_set: str, ok: bool | None, message: str) -> None:
        print(json.dumps({"case": b.case, "variant": b.variant, "input_set": input_set, "ok": ok,
                          "message": message}), flush=True)

    for spec in json.load(sys.stdin):
        b = Bundle(**spec)

        try:
            with open(b.path, "rb") as f:
                data = f.read(BUNDLE_LIMIT + 1)
        except OSError as e:
            emit(b, "*", None, f"unreadable: {e}")
            continue
        if len(data) > BUNDLE_LIMIT:
            emit(b, "*", None, f"larger than {BUNDLE_LIMIT >> 20} MiB")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != b.sha256:
            emit(b, "*", None, f"sha256 {digest} is not the manifest's {b.sha256}: not checked")
            continue
        # The bundle must be this corpus's program, input sets and goldens: rebuilt from them (hash-checked), it is
        # the same bytes (serialization is deterministic). A bundle that is not is stale or forged: not checked.
        try:
            cases = test_cases(Path(b.case_dir), b.entry, b.set_records)
            if [name for name, _, _ in cases] != b.sets:
                raise ValueError(f"its input sets {b.sets} are not the program's {[n for n, _, _ in cases]}")
            if bundle_bytes(Path(b.case_dir), b.entry, cases) != data:
                raise ValueError("rebuilt from the corpus's program, input sets and goldens, it differs")
        except Exception as e:  # noqa: BLE001 - reported for every result of the bundle
            emit(b, "*", None, f"the bundle is not this corpus's (stale or forged): {type(e).__name__}: {e}")
            continue
        try:
            module = portable_lib._load_bundled_program_from_buffer(data)
        except Exception as e:  # noqa: BLE001 - ExecuTorch refused the bundle: reported with its message
            emit(b, "*", None, f"ExecuTorch cannot load the bundle: {type(e).__name__}: {e}")
            continue
        for index, name in enumerate(b.sets):
            try:
                module.verify_result_with_bundled_expected_output("forward", index, b.rtol, b.atol)
                emit(b, name, True, "")
            except Exception as e:  # noqa: BLE001 - ExecuTorch's check failed: its verdict, with its message
                emit(b, name, False, f"{type(e).__name__}: {str(e).strip()[:500]}")
    return 0


def executorch_check(bundles: list[Bundle]) -> list[dict[str, Any]]:
    """ExecuTorch's verdict per bundled test case, from a child process; a crash fails the results it did not
    report."""
    done = subprocess.run([sys.executable, "-m", "torchconform.tools.bundled", "--child"],
                          input=json.dumps([b.__dict__ for b in bundles]), capture_output=True, text=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        seen = {(r["case"], r["variant"], r["input_set"]) for r in rows}
        seen_bundles = {(r["case"], r["variant"]) for r in rows if r["input_set"] == "*"}
        why = (f"ExecuTorch's check exited {done.returncode} before reporting this result: "
               + (done.stderr.strip().splitlines() or [""])[-1][:300])
        rows += [{"case": b.case, "variant": b.variant, "input_set": s, "ok": None, "message": why}
                 for b in bundles if (b.case, b.variant) not in seen_bundles
                 for s in b.sets if (b.case, b.variant, s) not in seen]
    return rows


def runner_verdicts(corpus: Path, bundles: list[Bundle], results: Path | None, runner: str,
                    extra: list[str]) -> dict[tuple[str, str, str], str]:
    """(case, variant, input set) -> the C++ runner's verdict on the ExecuTorch program, from ``results`` or from a
    ``torchconform-run`` of just those results."""
    if results is None:
        with tempfile.TemporaryDirectory(prefix="torchconform-bundle-") as tmp:
            report = Path(tmp) / "report.json"
            cmd = [runner, str(corpus), "--device", "cpu", "--quiet", "--json", str(report), *extra]
            for b in bundles:
                cmd += ["--result", f"{b.case}:{b.variant}@executorch/*"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if not report.is_file():
                raise ValueError(f"{runner} wrote no report (exit {done.returncode}): {done.stderr.strip()[-400:]}")
            document = json.loads(report.read_text())
    else:
        document = json.loads(Path(results).read_text())
    out = {}
    for r in document.get("results", []):
        if r.get("device") == "cpu" and r.get("artifact", "").endswith("@executorch"):
            out[(r["case"], r["artifact"][: -len("@executorch")], r["input_set"])] = r["verdict"]
    return out


def compare(bundles: list[Bundle], et_rows: list[dict[str, Any]], verdicts: dict[tuple[str, str, str], str]
            ) -> list[dict[str, Any]]:
    """One row per bundled test case: ExecuTorch's verdict, the runner's, and whether they agree (ExecuTorch passes
    exactly where the runner says PASS; a failed expected failure fails in ExecuTorch too)."""
    by_key = {(r["case"], r["variant"], r["input_set"]): r for r in et_rows}
    rows = []
    for b in bundles:
        whole = by_key.get((b.case, b.variant, "*"))
        for s in b.sets:
            et = whole or by_key.get((b.case, b.variant, s)) or {"ok": None, "message": "not reported"}
            tc = verdicts.get((b.case, b.variant, s))
            status = ("error" if et["ok"] is None or tc is None else
                      "agree" if et["ok"] == (tc == "PASS") else "DISAGREE")
            rows.append({"result": f"{b.case}:{b.variant}@executorch/{s}", "executorch": et["ok"],
                         "executorch_message": et["message"], "torchconform": tc or "not in the runner's report",
                         "status": status, "rtol": b.rtol, "atol": b.atol})
    return rows


def run(corpus: Path, *, results: Path | None, runner: str, extra: list[str], json_out: Path | None,
        out: Callable[[str], None]) -> int:
    bundles, unbundled, unreadable = plan(corpus)
    for line in unbundled:
        out(f"NOT BUNDLED  {line}")
    for line in unreadable:
        out(f"UNREADABLE   {line}")
    if not bundles:
        out(f"bundle-check: {corpus} has no bundled ExecuTorch program (torchconform export --bundled): nothing "
            "checked" + (f"; {len(unreadable)} cases not readable" if unreadable else ""))
        return 1 if unreadable else 2
    import importlib.util

    if importlib.util.find_spec("executorch") is None:
        raise ValueError(f"{len(bundles)} bundled programs to check, but ExecuTorch's check needs the executorch "
                         "package, which this Python does not have (ci/executorch.sh sets up an environment with it)")
    rows = compare(bundles, executorch_check(bundles), runner_verdicts(corpus, bundles, results, runner, extra))
    if not rows:
        out(f"bundle-check: the bundles of {corpus} hold no input set: nothing checked")
        return 2
    for r in rows:
        et = {True: "pass", False: "FAIL", None: "ERROR"}[r["executorch"]]
        msg = f"  ({r['executorch_message']})" if r["executorch_message"] else ""
        out(f"{r['status'].upper():8s} {r['result']}  executorch {et}, torchconform {r['torchconform']}{msg}")
    agree = sum(r["status"] == "agree" for r in rows)
    both_fail = sum(r["status"] == "agree" and not r["executorch"] for r in rows)
    out(f"bundle-check: {len(rows)} bundled results in {len(bundles)} programs: {agree} agree ({agree - both_fail} "
        f"pass in both, {both_fail} fail in both), {sum(r['status'] == 'DISAGREE' for r in rows)} disagree, "
        f"{sum(r['status'] == 'error' for r in rows)} not checked; {len(unbundled)} programs not bundled"
        + (f"; {len(unreadable)} cases not readable (their bundles, if any, are not checked)" if unreadable else ""))
    if json_out:
        json_out.write_text(json.dumps({"corpus": str(corpus), "results": rows, "not_bundled": unbundled,
                                        "unreadable": unreadable}, indent=2) + "\n")
    return 0 if agree == len(rows) and not unreadable else 1


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    sys.exit(_child_main())
