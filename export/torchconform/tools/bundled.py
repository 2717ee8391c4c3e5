"""``torchconform bundle-check``: ExecuTorch's own bundled-program check against torchconform's verdicts.

``torchconform export --bundled`` writes every ExecuTorch program of a corpus also as a BundledProgram (``.bpte``):
the program with the case's input sets and goldens as ExecuTorch's test cases, which a device runs with ExecuTorch's
check and no torchconform (``BundledModule.verify_result_with_bundled_expected_output``: load test case i, execute,
compare with its expected outputs at one rtol/atol). This command runs that check on every bundle of a corpus and sets
it beside the C++ runner's verdict on the same program and input set: they must agree, pass for pass and fail for
fail. A disagreement means one of the two checks is wrong about this program.

ExecuTorch's check runs in a child process (a hostile or broken ``.bpte`` that crashes ExecuTorch's runtime is
reported, not fatal), which reads every file through the core's checked reader and checks that the bundle is this
corpus's program, input sets and goldens (rebuilt from the corpus's files, the bundle is the same bytes) and that
its recorded rtol/atol are those the case's tolerance gives for those goldens: a stale or forged bundle is never
checked. Each line says the rtol/atol ExecuTorch checked at, marked LOOSENED where the core finds them looser than
the dtype's default, as the runner marks its own. The runner's verdicts
come from a ``torchconform-run --json`` report (``--results``) or from running ``torchconform-run`` on the bundled
programs' results.

Exit status: 0 every bundled result agrees; 1 a disagreement, a bundle that fails its hash, is not the corpus's or
crashes ExecuTorch, or a case whose manifest cannot be read; 2 nothing to check (no bundle in the corpus) or bad
usage."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import CorpusInputError, SetupError
from ..text import json_text, terminal


@dataclass
class Bundle:
    case: str
    variant: str
    file: str          # the .bpte, relative to the case directory
    sha256: str
    sets: list[str]
    rtol: float        # as the manifest records them: checked against what the case's policy gives (the child)
    atol: float


def plan(corpus: Path) -> tuple[list[Bundle], list[str], list[str]]:
    """The corpus's bundles (from manifests the C++ reader hash-checked); one line per ExecuTorch program that has
    no bundle, with why; one line per case whose manifest could not be read (its bundles, if any, go unchecked).
    Every piece of corpus text in those lines is escaped for a terminal."""
    from .. import _core

    opened = _core.Corpus.open(str(corpus))
    bundles, unbundled, unreadable = [], [], []
    for case in opened.cases:
        if case.error:
            unreadable.append(terminal(f"{case.name}: {case.error}"))
            continue
        manifest = json.loads(case.manifest_json)
        for v in manifest.get("variants", []):
            if v["kind"] != "executorch_program":
                continue
            b = v.get("bundled")
            if "file" not in v:
                unbundled.append(terminal(f"{case.name}:{v['name']}: not lowered ({v.get('error', '')})"))
            elif b is None:
                unbundled.append(terminal(f"{case.name}:{v['name']}: no bundle (exported without --bundled)"))
            elif "file" not in b:
                unbundled.append(terminal(f"{case.name}:{v['name']}: {b.get('error', 'no bundle')}"))
            else:
                missing = [k for k in ("sha256", "input_sets", "rtol", "atol") if not b.get(k) and b.get(k) != 0]
                if missing:
                    raise CorpusInputError(terminal(f"{case.name}:{v['name']}: the bundle record has a file but no "
                                              f"{', '.join(missing)}"))
                bundles.append(Bundle(case.name, v["name"], b["file"], b["sha256"], list(b["input_sets"]),
                                      float(b["rtol"]), float(b["atol"])))
    return bundles, unbundled, unreadable


def _child_main(corpus: str) -> int:
    """In the child: read the bundles as JSON on stdin, run ExecuTorch's check on each test case, print one JSON line
    per result (flushed, so a crash keeps what came before). Every file comes through the core's checked reader (a
    regular file inside the corpus, its declared size and SHA-256, read once)."""
    import torch
    from executorch.extension.pybindings import portable_lib

    from .. import _core
    from ..writing.executorch import bundle_bytes, bundle_cases, bundled_tolerance

    opened = _core.Corpus.open(corpus)
    cases = {c.name: c for c in opened.cases}

    def emit(b: Bundle, input_set: str, ok: bool | None, message: str, rtol: float = float("nan"),
             atol: float = float("nan"), loosened: bool = False) -> None:
        print(json.dumps({"case": b.case, "variant": b.variant, "input_set": input_set, "ok": ok,
                          "message": message, "rtol": rtol, "atol": atol, "loosened": loosened}), flush=True)

    for spec in json.load(sys.stdin):
        b = Bundle(**spec)
        try:
            data = _core.read_case_file(opened, b.case, b.file)
        except _core.CorpusError as e:
            emit(b, "*", None, f"not checked: {e}")
            continue
        # The bundle must be this corpus's program, input sets and goldens: rebuilt from them, it is the same bytes
        # (serialization is deterministic), and its tolerance is the one the case's policy gives for those goldens.
        # A bundle that is not is stale or forged: not checked.
        try:
            manifest = json.loads(cases[b.case].manifest_json)
            entry = next(v for v in manifest["variants"] if v["name"] == b.variant)
            read = lambda rel, case=b.case: _core.read_case_file(opened, case, rel)  # noqa: E731
            rebuilt = bundle_cases(read, entry, manifest["input_sets"])
            if [name for name, _, _ in rebuilt] != b.sets:
                raise CorpusInputError(f"its input sets {b.sets} are not the program's {[n for n, _, _ in rebuilt]}")
            if bundle_bytes(read(entry["file"]), rebuilt) != data:
                raise CorpusInputError("rebuilt from the corpus's program, input sets and goldens, it differs")
            leaves = [leaf for _, _, e in rebuilt for leaf in e]
            rtol, atol, _ = bundled_tolerance(leaves, entry.get("tolerance") or manifest["tolerance"])
            if (rtol, atol) != (b.rtol, b.atol):
                raise CorpusInputError(f"its record's rtol={b.rtol:g} atol={b.atol:g} are not the rtol={rtol:g} "
                                       f"atol={atol:g} the case's tolerance gives for these goldens")
            # Loosened as the runner says it: a tolerance the core finds looser than the dtype's default.
            loosened = any(_core.compare(x, x, {"default": {"mode": "allclose", "rtol": rtol, "atol": atol},
                                                "outputs": {}}).leaves[0].loosened
                           for x in leaves if isinstance(x, torch.Tensor) and x.is_floating_point())
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
                module.verify_result_with_bundled_expected_output("forward", index, rtol, atol)
                emit(b, name, True, "", rtol, atol, loosened)
            except Exception as e:  # noqa: BLE001 - ExecuTorch's check failed: its verdict, with its message
                emit(b, name, False, f"{type(e).__name__}: {str(e).strip()[:500]}", rtol, atol, loosened)
    return 0


def executorch_check(corpus: Path, bundles: list[Bundle], timeout: float = 3600) -> list[dict[str, Any]]:
    """ExecuTorch's verdict per bundled test case, from a child process; a crash fails the results it did not
    report."""
    done = subprocess.run([sys.executable, "-m", "torchconform.tools.bundled", "--child", str(corpus)],
                          input=json.dumps([b.__dict__ for b in bundles]), capture_output=True, text=True,
                          timeout=timeout)
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
                raise SetupError(f"{runner} wrote no report (exit {done.returncode}): {done.stderr.strip()[-400:]}")
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
                         "status": status, "rtol": et.get("rtol"), "atol": et.get("atol"),
                         "loosened": bool(et.get("loosened"))})
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
        raise SetupError(f"{len(bundles)} bundled programs to check, but ExecuTorch's check needs the executorch "
                         "package, which this Python does not have (ci/executorch.sh sets up an environment with it)")
    rows = compare(bundles, executorch_check(corpus, bundles),
                   runner_verdicts(corpus, bundles, results, runner, extra))
    if not rows:
        out(f"bundle-check: the bundles of {corpus} hold no input set: nothing checked")
        return 2
    for r in rows:
        et = {True: "pass", False: "FAIL", None: "ERROR"}[r["executorch"]]
        msg = f"  ({r['executorch_message']})" if r["executorch_message"] else ""
        tol = ("" if r["rtol"] is None or r["rtol"] != r["rtol"] else
               f" at rtol={r['rtol']:g} atol={r['atol']:g}" + (" (LOOSENED)" if r["loosened"] else ""))
        out(terminal(f"{r['status'].upper():8s} {r['result']}  executorch {et}{tol}, torchconform "
                     f"{r['torchconform']}{msg}"))
    agree = sum(r["status"] == "agree" for r in rows)
    both_fail = sum(r["status"] == "agree" and not r["executorch"] for r in rows)
    loosened = sum(r["loosened"] for r in rows)
    out(f"bundle-check: {len(rows)} bundled results in {len(bundles)} programs: {agree} agree ({agree - both_fail} "
        f"pass in both, {both_fail} fail in both), {sum(r['status'] == 'DISAGREE' for r in rows)} disagree, "
        f"{sum(r['status'] == 'error' for r in rows)} not checked"
        + (f" ({loosened} checked under a LOOSENED tolerance)" if loosened else "")
        + f"; {len(unbundled)} programs not bundled"
        + (f"; {len(unreadable)} cases not readable (their bundles, if any, are not checked)" if unreadable else ""))
    if json_out:
        json_out.write_text(json_text({"corpus": str(corpus), "results": rows, "not_bundled": unbundled,
                                        "unreadable": unreadable}, indent=2) + "\n")
    return 0 if agree == len(rows) and not unreadable else 1


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    sys.exit(_child_main(sys.argv[2]))
