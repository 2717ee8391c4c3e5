"""Proof by mutation: 500 corrupted copies of the golden corpus plus 20 damaged corpus.json files, verified by the
C++ runner. Never a crash, never a false PASS. The seed is fixed so a failure replays:
    python tests/python/mutation.py --count 500 --seed <seed> --keep /tmp/mutants
TORCHCONFORM_MUTATION_SEED picks another seed (to explore); the counts are printed and written to
build/test-results/mutation.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import ROOT
from mutation import run

SEED = int(os.environ.get("TORCHCONFORM_MUTATION_SEED", "20261126"))


def test_mutated_corpora_never_pass_and_never_crash(runner: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = run(runner, count=500, seed=SEED, corpus_json=20)
    out = ROOT / "build" / "test-results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "mutation.json").write_text(json.dumps(summary, indent=2))
    with capsys.disabled():
        print(f"\nmutation test (seed {SEED}): {summary['mutations']} mutations in {summary['seconds']} s; "
              f"false PASS {summary['false_pass']}, crashes {summary['crashed']}, "
              f"runner deaths {summary['runner_died']}, cases without a result {summary['missing_results']}")
        for outcome, n in summary["outcomes"].items():
            print(f"  {n:4d}  {outcome}")
    assert summary["mutations"] >= 500
    assert summary["false_pass"] == 0, summary["false_pass_details"]
    assert summary["corpus_json_false_pass"] == 0
    assert summary["missing_results"] == 0, summary["missing_details"]
    assert summary["runner_died"] == 0
    assert summary["crashed"] == 0, "LibTorch crashed on a mutated file (isolated, but worth a look)"
