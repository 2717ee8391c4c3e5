"""docs/report-schema.json describes the JSON report exactly: real reports (a passing run, a failing one, one with
errors, crashes and loosened tolerances) validate with the core's validator and with jsonschema, and a report with a
field changed does not."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest

import hostile
from conftest import GOLDEN, ROOT, perturbed_corpus
from torchconform import _core
from torchconform.schema import standard_validate

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end

SCHEMA = json.loads((ROOT / "docs" / "report-schema.json").read_text())


def problems(report: dict) -> tuple[str, str]:
    return _core.validate_with_schema(json.dumps(SCHEMA), json.dumps(report)), standard_validate(SCHEMA, report)


@pytest.fixture(scope="module")
def reports(runner: Path, golden_run, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("reports")
    loose = hostile.single(tmp / "loose", "simple_cnn")
    m = hostile.manifest(loose, "simple_cnn")
    m["tolerance"] = {"default": {"mode": "ulp", "max_ulp": 1000}, "outputs": {}}
    hostile.write_manifest(loose, "simple_cnn", m)
    runs = [(perturbed_corpus(tmp), {}), (loose, {}), (GOLDEN, {"TORCHCONFORM_FAULT_INJECT": "process_outputs:segv"})]
    out = [json.loads(golden_run.json.read_text())]
    for i, (corpus, env) in enumerate(runs):
        path = tmp / f"r{i}.json"
        subprocess.run([str(runner), str(corpus), "--json", str(path), "--quiet"], capture_output=True,
                       timeout=600, env={**os.environ, **env})
        out.append(json.loads(path.read_text()))
    return out


def test_real_reports_satisfy_the_schema(reports: list[dict]) -> None:
    verdicts = {r["verdict"] for report in reports for r in report["results"]}
    assert {"PASS", "FAIL", "XFAIL", "CRASH"} <= verdicts  # the reports cover what the schema describes
    assert any(r["loosened"] for report in reports for r in report["results"])
    for report in reports:
        assert problems(report) == ("", "")


@pytest.mark.parametrize("change", [
    lambda r: r["summary"].pop("verified"),
    lambda r: r["results"][0].update(verdict="MAYBE"),
    lambda r: r["results"][0].update(error_kind="whatever"),
    lambda r: r["results"][0].update(extra=1),
    lambda r: r["results"][0]["leaves"][0].pop("tolerance"),
    lambda r: r["results"][0]["leaves"][0].pop("applied_tolerance"),
    lambda r: r["results"][0]["leaves"][0]["applied_tolerance"].update(mode="loose"),
    lambda r: r.update(corpus_sha256="abc"),
])
def test_a_changed_report_does_not(reports: list[dict], change) -> None:
    report = copy.deepcopy(reports[0])
    change(report)
    core, standard = problems(report)
    assert core and standard


def test_each_leaf_carries_its_tolerance_as_fields(reports: list[dict]) -> None:
    """The tolerance a leaf was compared under is data in the report (applied_tolerance), not only text to parse back:
    the fields and the text say the same, for every leaf of every report (allclose with the dtype's defaults
    resolved, ulp, exact)."""
    modes = set()
    for report in reports:
        for result in report["results"]:
            for leaf in result["leaves"]:
                t = leaf["applied_tolerance"]
                modes.add(t["mode"])
                if t["mode"] == "allclose":
                    assert leaf["tolerance"].startswith(f"allclose rtol={t['rtol']:g} atol={t['atol']:g}"), leaf
                elif t["mode"] == "ulp":
                    assert leaf["tolerance"].startswith(f"ulp max_ulp={t['max_ulp']}"), leaf
                else:
                    assert leaf["tolerance"].startswith("exact"), leaf
    assert {"allclose", "ulp", "exact"} <= modes
