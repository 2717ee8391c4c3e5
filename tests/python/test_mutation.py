"""Proof by mutation: 500 corrupted copies of the golden corpus, 150 re-signed semantic attacks and path tricks
(hostile.py, mutation.py) and 20 damaged corpus.json files, verified by the C++ runner, then the Python faces on a
sample. Never a false PASS, never a payload run, never a crash or a hang. The full sweep is in the heavy tier
(ci/test.sh --heavy); the default tier runs a deterministic sample of it (every semantic kind once). The seed is
fixed so a failure replays:
    python tests/python/mutation.py --count 500 --semantic 150 --seed <seed> --keep /tmp/mutants
TORCHCONFORM_MUTATION_SEED picks another seed (to explore); the counts are printed and written to
build/test-results/mutation.json (mutation-sample.json for the sample)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import ROOT
from mutation import RULES, failures, run

pytestmark = pytest.mark.e2e  # runs the runner, the CLI or an export end to end

SEED = int(os.environ.get("TORCHCONFORM_MUTATION_SEED", "20261126"))
FACES = {"quick": "report, tolerances, bundle-check, compile, localize",
         "all": "report, tolerances, bundle-check, compile, localize, the compat probe, the pytest plugin with and "
                "without xdist"}


def sweep(runner: Path, capsys: pytest.CaptureFixture[str], name: str, **sizes: int | str) -> dict:
    summary = run(runner, seed=SEED, **sizes)
    out = ROOT / "build" / "test-results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    text = (f"{name} (seed {SEED}): {summary['mutations']} mutations ({summary['semantic']} semantic) in "
            f"{summary['seconds']} s: {summary['false_pass']} false PASS, {summary['code_executed']} payloads run, "
            f"{summary['timed_out'] + summary['face_hangs']} hangs, "
            f"{summary['raw_control_characters_in_output']} raw control characters; runner deaths "
            f"{summary['runner_died']}, crashes {summary['crashed']}, cases without a result "
            f"{summary['missing_results']}; Python faces ({FACES[sizes.get('faces', 'all')]}): "
            f"{summary['python_face_runs']} runs, {len(summary['python_face_problems'])} problems\n"
            + "".join(f"  {n:4d}  {outcome}\n" for outcome, n in summary["outcomes"].items()))
    # Printed at the end of the session by conftest (under pytest-xdist a worker's output is not shown).
    (out / f"{name}.summary.txt").write_text(text)
    with capsys.disabled():
        print("\n" + text, end="")
    assert summary["false_pass"] == 0, summary["false_pass_details"]
    assert summary["code_executed"] == 0
    assert summary["corpus_json_false_pass"] == 0
    assert summary["missing_results"] == 0, summary["missing_details"]
    assert summary["runner_died"] == 0
    assert summary["crashed"] == 0, "LibTorch crashed on a mutated file (isolated, but worth a look)"
    assert summary["timed_out"] == 0
    assert summary["raw_control_characters_in_output"] == 0
    assert summary["python_face_problems"] == []
    assert failures(summary) == 0
    # Every semantic kind was drawn (the proof covers each class, not a lucky subset).
    assert {k.split(":")[0].removeprefix("semantic ") for k in summary["outcomes"] if k.startswith("semantic")} \
        == set(RULES)
    return summary


def test_a_deterministic_sample_never_passes_and_never_crashes(runner: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The default tier's share of the sweep: every semantic kind once, a few dozen byte-level mutations and damaged
    corpus.json files, the quick Python faces (report, tolerances, bundle-check, compile, localize; the compat probe
    and the plugin with and without xdist have dedicated tests in this tier, and run in the full sweep); the same
    seed, so the same corpora every run."""
    summary = sweep(runner, capsys, "mutation-sample", count=24, corpus_json=2, semantic=len(RULES), faces="quick")
    assert summary["mutations"] >= 24 + 2 + len(RULES)


@pytest.mark.heavy
def test_mutated_corpora_never_pass_and_never_crash(runner: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = sweep(runner, capsys, "mutation", count=500, corpus_json=20, semantic=150)
    assert summary["mutations"] >= 670
