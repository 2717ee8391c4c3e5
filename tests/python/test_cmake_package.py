"""find_package(torchconform) and torchconform_add_corpus_tests() from a C++ project (issue 18): the installed package
registers one ctest test per case x device behind the AOTInductor compile fixture; a perturbed golden fails exactly
its case's test; a corpus whose case name is not [a-z][a-z0-9_]* is refused at configure time (nothing from a corpus
reaches a command line unchecked). ci/cpp-consumer.sh runs the full examples/cpp_consumer project in CI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOLDEN, ROOT, copy_corpus, perturbed_corpus

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
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


def project(tmp_path: Path, prefix: Path, corpus: Path) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\nproject(t LANGUAGES CXX)\nfind_package(torchconform REQUIRED)\n"
        f"enable_testing()\ntorchconform_add_corpus_tests(CORPUS \"{corpus}\" PREFIX c. TIMEOUT 120)\n")
    return subprocess.run(["cmake", "-S", str(src), "-B", str(tmp_path / "b"), f"-DCMAKE_PREFIX_PATH={prefix}",
                           f"-DTORCHCONFORM_PYTHON={sys.executable}"], capture_output=True, text=True, timeout=300)


def ctest(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ctest", "--test-dir", str(tmp_path / "b"), "-j", "2"], capture_output=True, text=True,
                          timeout=900, env={**os.environ})


def test_one_test_per_case_behind_the_compile_fixture(prefix: Path, tmp_path: Path) -> None:
    r = project(tmp_path, prefix, GOLDEN)
    assert r.returncode == 0, r.stdout + r.stderr
    listed = subprocess.run(["ctest", "--test-dir", str(tmp_path / "b"), "-N"], capture_output=True, text=True)
    cases = [c["name"] for c in json.loads((GOLDEN / "corpus.json").read_text())["cases"]]
    names = re.findall(r"Test\s+#\d+: (\S+)", listed.stdout)
    assert sorted(names) == sorted(["c.compile"] + [f"c.{c}__cpu" for c in cases])
    r = ctest(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_perturbed_golden_fails_its_case_only(prefix: Path, tmp_path: Path) -> None:
    corpus = perturbed_corpus(tmp_path)
    assert project(tmp_path, prefix, corpus).returncode == 0
    r = ctest(tmp_path)
    assert r.returncode != 0
    failed = re.findall(r"\d+ - (\S+) \(Failed\)", r.stdout)
    assert failed == ["c.simple_cnn__cpu"], r.stdout


def test_a_case_name_that_is_not_a_name_is_refused(prefix: Path, tmp_path: Path) -> None:
    corpus = copy_corpus(tmp_path)
    index = json.loads((corpus / "corpus.json").read_text())
    index["cases"][0]["name"] = "x;$(touch pwned)"
    (corpus / "corpus.json").write_text(json.dumps(index))
    r = project(tmp_path, prefix, corpus)
    assert r.returncode != 0 and "is not [a-z][a-z0-9_]*" in r.stderr
    shutil.rmtree(tmp_path / "b", ignore_errors=True)
    r = project(tmp_path, prefix, tmp_path / "nowhere")
    assert r.returncode != 0 and "not a torchconform corpus" in r.stderr
