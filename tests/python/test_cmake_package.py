"""find_package(torchconform) and torchconform_add_corpus_tests() from a C++ project (issue 18): the installed package
registers one ctest test per result (case x artifact x input set, discovered by the runner's --list when ctest starts)
x device behind the AOTInductor compile fixture, or one per case x device with PER_CASE; a perturbed golden fails
exactly the tests of the results the runner fails; a corpus whose case name is not [a-z][a-z0-9_]* is refused at
configure time, and a listed id that is not a result id when ctest starts (nothing from a corpus reaches a command
line unchecked). ci/cpp-consumer.sh runs the full examples/cpp_consumer project in CI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOLDEN, ROOT, copy_corpus, flat, perturbed_corpus, result_ids

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]
BUILD = ROOT / "build"


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    if not (BUILD / "CMakeCache.txt").is_file():
        pytest.fail("no build/ to install the package from: run ci/build.sh first")
    out = tmp_path_factory.mktemp("pkg")
    r = subprocess.run(["cmake", "--install", str(BUILD), "--component", "torchconform_cmake", "--prefix", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "lib" / "cmake" / "torchconform" / "torchconformConfig.cmake").is_file()
    assert (out / "bin" / "torchconform-run").is_file() and (out / "include" / "torchconform" / "runner.h").is_file()
    return out


def project(tmp_path: Path, prefix: Path, corpus: Path, extra: str = "") -> subprocess.CompletedProcess[str]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\nproject(t LANGUAGES CXX)\nfind_package(torchconform REQUIRED)\n"
        f"enable_testing()\ntorchconform_add_corpus_tests(CORPUS \"{corpus}\" PREFIX c. TIMEOUT 120 {extra})\n")
    return subprocess.run(["cmake", "-S", str(src), "-B", str(tmp_path / "b"), f"-DCMAKE_PREFIX_PATH={prefix}",
                           f"-DTORCHCONFORM_PYTHON={sys.executable}"], capture_output=True, text=True, timeout=300)


def ctest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ctest", "--test-dir", str(tmp_path / "b"), "-j", "2", *args], capture_output=True,
                          text=True, timeout=900, env={**os.environ})


def listed(tmp_path: Path) -> list[str]:
    r = subprocess.run(["ctest", "--test-dir", str(tmp_path / "b"), "-N"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return re.findall(r"Test\s+#\d+: (\S+)", r.stdout)


def test_one_test_per_result_behind_the_compile_fixture(prefix: Path, golden_run, tmp_path: Path) -> None:
    r = project(tmp_path, prefix, GOLDEN)
    assert r.returncode == 0, r.stdout + r.stderr
    ids = result_ids(golden_run.json)
    assert sorted(listed(tmp_path)) == sorted(["c.compile"] + [f"c.{i}__cpu" for i in ids])
    # Two cases' tests (and the fixture they require) run; ci/cpp-consumer.sh runs all of them. An expected failure
    # shows as Skipped, never as Passed.
    r = ctest(tmp_path, "-R", r"c\.(dynamic_router|process_outputs)[:/]")
    assert r.returncode == 0, r.stdout + r.stderr
    verdict = dict(zip(ids, (x["verdict"] for x in json.loads(golden_run.json.read_text())["results"])))
    mine = [i for i in ids if i.split("/")[0].split(":")[0] in ("dynamic_router", "process_outputs")]
    assert sorted(re.findall(r"Test\s+#\d+: (\S+) \.+\s+Passed", r.stdout)) == \
           sorted(["c.compile"] + [f"c.{i}__cpu" for i in mine if verdict[i] == "PASS"])
    skipped = sorted(re.findall(r"Test\s+#\d+: (\S+) \.+\*+Skipped", r.stdout))
    assert skipped == sorted(f"c.{i}__cpu" for i in mine if verdict[i] == "XFAIL") and skipped, r.stdout


def test_per_case_registers_one_test_per_case(prefix: Path, tmp_path: Path) -> None:
    r = project(tmp_path, prefix, GOLDEN, "PER_CASE")
    assert r.returncode == 0, r.stdout + r.stderr
    cases = [c["name"] for c in json.loads((GOLDEN / "corpus.json").read_text())["cases"]]
    assert sorted(listed(tmp_path)) == sorted(["c.compile"] + [f"c.{c}__cpu" for c in cases])
    r = ctest(tmp_path, "-R", r"c\.(compile|process_outputs__cpu)$")
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_perturbed_golden_fails_exactly_the_results_the_runner_fails(prefix: Path, runner: Path,
                                                                         tmp_path: Path) -> None:
    corpus = perturbed_corpus(tmp_path)
    out = tmp_path / "r.json"
    subprocess.run([str(runner), str(corpus), "--case", "simple_cnn", "--json", str(out)], capture_output=True,
                   timeout=600)
    failing = sorted(f"c.{i}__cpu" for i, x in zip(result_ids(out), json.loads(out.read_text())["results"])
                     if x["verdict"] == "FAIL")
    assert failing and all("/b4_32x32__" in f for f in failing)
    assert project(tmp_path, prefix, corpus).returncode == 0
    r = ctest(tmp_path, "-R", r"c\.(compile|simple_cnn[:/])")
    assert r.returncode != 0
    assert sorted(re.findall(r"\d+ - (\S+) \(Failed\)", r.stdout)) == failing, r.stdout


def test_a_corpus_of_expected_failures_only_is_not_green(prefix: Path, tmp_path: Path) -> None:
    import hostile

    corpus, m = hostile.expected_failures_only(tmp_path)
    assert project(tmp_path, prefix, corpus).returncode == 0
    r = ctest(tmp_path)
    assert r.returncode != 0, r.stdout
    assert re.findall(r"\d+ - (\S+) \(Failed\)", r.stdout) == ["c.nothing_verifiable__cpu"], r.stdout
    assert len(re.findall(r"\*+Skipped", r.stdout)) == len(m["input_sets"]) + 1


def test_a_listed_id_that_is_not_a_result_id_is_refused(prefix: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake-runner"
    fake.write_text("#!/bin/sh\necho 'simple_cnn/b4_32x32'\necho 'x;$(touch pwned)/a'\n")
    fake.chmod(0o755)
    assert project(tmp_path, prefix, GOLDEN, f"RUNNER \"{fake}\"").returncode == 0
    r = subprocess.run(["ctest", "--test-dir", str(tmp_path / "b"), "-N"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode != 0 and "which is not a result id" in flat(r.stdout + r.stderr)
    assert not list(tmp_path.rglob("pwned"))
    fake.write_text("#!/bin/sh\necho 'cannot open the corpus' >&2\nexit 2\n")
    r = subprocess.run(["ctest", "--test-dir", str(tmp_path / "b"), "-N"], capture_output=True, text=True)
    assert r.returncode != 0 and "cannot list the results" in flat(r.stdout + r.stderr)  # a failed listing is loud


def test_a_case_name_that_is_not_a_name_is_refused(prefix: Path, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    index = json.loads((corpus / "corpus.json").read_text())
    index["cases"][0]["name"] = "x;$(touch pwned)"
    (corpus / "corpus.json").write_text(json.dumps(index))
    r = project(tmp_path, prefix, corpus)
    assert r.returncode != 0 and "is not [a-z][a-z0-9_]*" in flat(r.stderr)
    shutil.rmtree(tmp_path / "b", ignore_errors=True)
    r = project(tmp_path, prefix, tmp_path / "nowhere")
    assert r.returncode != 0 and "not a torchconform corpus" in flat(r.stderr)


def test_a_corpus_with_older_file_times_is_listed_again(prefix: Path, tmp_path: Path) -> None:
    """The per-result tests are re-listed when corpus.json's content changes, not its time: a corpus replaced by one
    with a new case but older file times (tar x, cp -a) gets the new case's tests (it used to keep the old list, so
    a new FAILing case had no test and ctest said 100% passed)."""
    import hostile

    corpus = tmp_path / "corpus"
    shutil.copytree(hostile.single(tmp_path / "one", "process_outputs"), corpus)
    assert project(tmp_path, prefix, corpus).returncode == 0
    before = listed(tmp_path)
    assert before and not any(x.startswith("c.simple_cnn") for x in before)
    two = hostile.single(tmp_path / "two", "simple_cnn")
    shutil.copytree(GOLDEN / "process_outputs", two / "process_outputs")
    index = json.loads((GOLDEN / "corpus.json").read_text())
    index["cases"] = [c for c in index["cases"] if c["name"] in ("simple_cnn", "process_outputs")]
    (two / "corpus.json").write_text(json.dumps(index))
    old = 1_000_000_000  # 2001: older than the list ctest wrote
    for path in [two, *two.rglob("*")]:
        os.utime(path, (old, old))
    shutil.rmtree(corpus)
    shutil.copytree(two, corpus, copy_function=shutil.copy2)  # (keeps the old times, as cp -a does)
    for path in [corpus, *corpus.rglob("*")]:
        os.utime(path, (old, old))
    after = listed(tmp_path)
    assert any(x.startswith("c.simple_cnn") for x in after), after
    assert sorted(after) != sorted(before)
