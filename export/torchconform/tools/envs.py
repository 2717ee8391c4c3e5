"""Environments for other PyTorch versions (``torchconform upgrade``): one isolated Python environment per torch
version, with the user's extra requirements, and a ``torchconform-run`` built against each one's LibTorch, all
cached so that a second run builds and installs nothing.

- **Environments** live under ``<cache>/envs/torch-<version>-<key>``, the key a digest of the requirements and the
  interpreter. They are made with uv where it is installed (``uv venv`` + ``uv pip install``: its cache hard-links a
  second environment of the same torch in seconds when the cache is on the same filesystem; docs/upgrade.md has the
  measurement against venv + pip), else with ``python -m venv`` + pip. pip's own index settings (``pip config``:
  find-links, extra index URLs) are handed to uv, which does not read them, so both install from the same places.
  Torch is always pinned exactly: a range would pull a multi-GB CUDA build. ``--env VERSION=PYTHON[:RUNNER]`` uses an
  environment the user already has instead.
- **Runners** are built from torchconform's own sources (this checkout) into ``<cache>/runners/<key>``, the key the
  torch version the environment reports (local part included: a CUDA and a CPU build are different LibTorches), this
  torchconform's version, the compiler and a digest of the C++ sources. A CUDA wheel's TorchConfig.cmake wants the
  CUDA toolkit even for CPU use: those are configured without it (``TORCHCONFORM_TORCH_WITHOUT_CMAKE_CONFIG``).
- **The Python package for other interpreters**: a copy of this package without its compiled core (which is built for
  one LibTorch and would not load under another torch), put on their ``PYTHONPATH``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import SetupError, UsageError
from ..text import terminal

PACKAGE = Path(__file__).resolve().parents[1]  # export/torchconform (or site-packages/torchconform)
BASE_REQUIREMENTS = ["numpy", "jsonschema"]  # what torchconform's export and the probes import beside torch


@dataclass
class Env:
    version: str  # the version asked for, e.g. "2.15.0"
    python: str
    runner: str = ""  # torchconform-run built against this environment's LibTorch ("" until built)
    torch: str = ""  # what the environment's torch reports, e.g. "2.15.0+cu130"
    cuda: str = ""  # torch.version.cuda, "" for a CPU build
    provided: bool = False  # given with --env (not made here)
    seconds: dict[str, float] = field(default_factory=dict)  # what making it took: {"env": s, "runner": s}
    info: dict = field(default_factory=dict)  # what the environment says of itself (upgrade_probe info)


def cache_root(cache: Path | None = None) -> Path:
    """``$TORCHCONFORM_UPGRADE_CACHE``, else ``$XDG_CACHE_HOME/torchconform/upgrade``, else
    ``~/.cache/torchconform/upgrade``: environments, runners and exports of ``torchconform upgrade``."""
    if cache:
        return Path(cache)
    if os.environ.get("TORCHCONFORM_UPGRADE_CACHE"):
        return Path(os.environ["TORCHCONFORM_UPGRADE_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg.startswith("/") else Path.home() / ".cache"
    return base / "torchconform" / "upgrade"


def digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def run_logged(cmd: list[str], log_file: Path, what: str, env: dict[str, str] | None = None,
               cwd: Path | None = None, timeout: float = 7200) -> None:
    """Runs a long command with its output in ``log_file``; a failure raises with the log's last lines."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as f:
        try:
            done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise SetupError(f"{what}: no end within {timeout:.0f} s (log: {log_file})") from e
        except OSError as e:
            raise SetupError(f"{what}: cannot run {cmd[0]}: {e}") from e
    if done.returncode != 0:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-15:]
        raise SetupError(f"{what} failed (exit {done.returncode}; log: {log_file}):\n  " +
                         "\n  ".join(terminal(x) for x in tail))


@functools.cache
def describe(python: str) -> tuple[str, str]:
    """(torch version, CUDA version or "") of an interpreter, which must import torch (asked once per process: each
    ask starts the interpreter and imports its torch)."""
    try:
        done = subprocess.run([python, "-c", "import json, torch; print(json.dumps([torch.__version__, "
                               "torch.version.cuda or '']))"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SetupError(f"{python}: cannot run it: {e}") from e
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise SetupError(f"{python} cannot import torch: {terminal(lines[-1] if lines else done.returncode)}")
    torch_version, cuda = json.loads(done.stdout.strip().splitlines()[-1])
    return torch_version, cuda


def same_release(reported: str, asked: str) -> bool:
    return reported.split("+")[0] == asked.split("+")[0]


def _pip_settings() -> dict[str, list[str]]:
    """pip's configured find-links and extra index URLs (``pip config list``), for uv, which reads no pip.conf."""
    out: dict[str, list[str]] = {"find-links": [], "extra-index-url": [], "index-url": []}
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return out
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in out:
            out[name] += value.strip().strip("'\"").split()
    return out


def uv() -> str:
    """uv's executable beside this interpreter or on PATH ("" when absent)."""
    here = Path(sys.executable).with_name("uv")
    return str(here) if here.exists() else (shutil.which("uv") or "")


def requirements(version: str, extras: list[str]) -> list[str]:
    return [f"torch=={version}", *BASE_REQUIREMENTS, *extras]


def make_env(version: str, extras: list[str], root: Path, log: Callable[[str], None],
             tool: str = "auto") -> Env:
    """The environment for ``version`` with ``extras`` (made once; a second call finds it)."""
    base = "python3.11" if shutil.which("python3.11") else sys.executable
    key = digest(version, *sorted(extras), base, *BASE_REQUIREMENTS)
    where = root / "envs" / f"torch-{version}-{key}"
    python = where / "bin" / "python"
    stamp = where / ".torchconform-env"
    reqs = requirements(version, extras)
    if stamp.is_file() and python.exists():
        # What the environment was made with, as its stamp records it (the caller's probe of the environment confirms
        # its torch); a stamp from before it recorded the CUDA version is completed once.
        made = json.loads(stamp.read_text())
        if "cuda" not in made:
            made["torch"], made["cuda"] = describe(str(python))
            stamp.write_text(json.dumps(made) + "\n")
        return Env(version, str(python), torch=made["torch"], cuda=made["cuda"])
    use = tool if tool != "auto" else ("uv" if uv() else "pip")
    log(f"[upgrade] making the torch {version} environment with {use} ({where}; a CUDA build of torch is several GB, "
        "minutes the first time)")
    t0 = time.perf_counter()
    shutil.rmtree(where, ignore_errors=True)
    logs = root / "logs" / f"env-{version}-{key}.log"
    if use == "uv":
        settings = _pip_settings()
        flags = [f"--find-links={x}" for x in settings["find-links"]]
        flags += [f"--index-url={x}" for x in settings["index-url"]]
        flags += [f"--extra-index-url={x}" for x in settings["extra-index-url"]]
        # (several indexes: the best match wins, as with pip, not the first index that has a torch at all)
        run_logged([uv(), "venv", "--python", base, str(where)], logs, f"uv venv {where}")
        run_logged([uv(), "pip", "install", "--python", str(python), "--index-strategy", "unsafe-best-match",
                    *flags, *reqs], logs.with_suffix(".install.log"), f"uv pip install {' '.join(reqs)}")
    else:
        run_logged([base, "-m", "venv", str(where)], logs, f"python -m venv {where}")
        run_logged([str(python), "-m", "pip", "install", "--disable-pip-version-check", *reqs],
                   logs.with_suffix(".install.log"), f"pip install {' '.join(reqs)}")
    torch_version, cuda = describe(str(python))
    if not same_release(torch_version, version):
        raise SetupError(f"asked for torch {version}, the environment {where} has {torch_version}")
    stamp.write_text(json.dumps({"requirements": reqs, "tool": use, "torch": torch_version, "cuda": cuda}) + "\n")
    env = Env(version, str(python), torch=torch_version, cuda=cuda)
    env.seconds["env"] = time.perf_counter() - t0
    log(f"[upgrade] torch {torch_version} environment ready in {env.seconds['env']:.0f} s")
    return env


def provided_env(version: str, spec: str) -> Env:
    """``--env VERSION=PYTHON[:RUNNER]``: an environment the user has."""
    python, _, runner = spec.partition(":")
    if not Path(python).exists() and not shutil.which(python):
        raise UsageError(f"--env {version}={spec}: no interpreter {python}")
    if runner and not Path(runner).is_file():
        raise UsageError(f"--env {version}={spec}: no runner {runner}")
    torch_version, cuda = describe(python)
    # A distribution's build may report another patch level than its release (Debian's 1.13.1 says 1.13.0a0): the
    # label is the user's name for it, and the reports show what it says of itself; major.minor must agree.
    if torch_version.split(".")[:2] != version.split(".")[:2]:
        raise UsageError(f"--env {version}={spec}: its torch is {torch_version}, not {version}")
    return Env(version, python, runner=runner, torch=torch_version, cuda=cuda, provided=True)


def source_root() -> Path:
    """torchconform's sources (CMakeLists.txt, cpp_runner/), which a runner is built from: this checkout."""
    root = PACKAGE.parents[1]
    if (root / "CMakeLists.txt").is_file() and (root / "cpp_runner" / "CMakeLists.txt").is_file():
        return root
    raise SetupError("building a torchconform-run for another LibTorch needs torchconform's sources (a checkout of "
                     f"the project); {PACKAGE} is an installed copy without them: pass --env VERSION=PYTHON:RUNNER")


RUNNER_SOURCES = ("CMakeLists.txt", "pyproject.toml", "cpp_runner", "cmake", "docs/corpus-schema.json")


def source_snapshot(root: Path, into: Path) -> str:
    """Copies what a runner is built from (RUNNER_SOURCES) out of the checkout into ``into`` and returns its digest: a
    runner is built from the copy, so that the sources it is cached under are the ones compiled (an edit made while a
    build runs would otherwise mix two versions of a header into one binary)."""
    shutil.rmtree(into, ignore_errors=True)
    for name in RUNNER_SOURCES:
        src, dst = root / name, into / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(src, dst)
    h = hashlib.sha256()
    for f in sorted(into.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(into)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def compiler_id() -> str:
    try:
        done = subprocess.run(["c++", "--version"], capture_output=True, text=True, timeout=60)
        return done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def build_runner(env: Env, root: Path, log: Callable[[str], None], jobs: int = 2) -> str:
    """A torchconform-run against ``env``'s LibTorch, cached by that torch's version, this torchconform's version, the
    compiler and the C++ sources; returns its path."""
    from .. import _core

    if env.runner:
        return env.runner
    snapshot = root / "sources" / f"{os.getpid()}-{env.torch}"
    key = digest(env.torch, _core.__version__, compiler_id(), source_snapshot(source_root(), snapshot))
    build = root / "runners" / f"torch-{env.torch}-{key}"
    runner = build / "cpp_runner" / "torchconform-run"
    if runner.is_file() and (build / ".torchconform-runner").is_file():
        shutil.rmtree(snapshot, ignore_errors=True)
        env.runner = str(runner)
        return env.runner
    src = build.with_name(build.name + ".src")  # the snapshot the build compiles (its paths are in the build's files)
    shutil.rmtree(src, ignore_errors=True)
    src.parent.mkdir(parents=True, exist_ok=True)  # (an empty cache has no runners/ yet)
    snapshot.rename(src)
    log(f"[upgrade] building torchconform-run against LibTorch {env.torch} ({build}; a few minutes, once)")
    t0 = time.perf_counter()
    options = ["-DTORCHCONFORM_BUILD_TESTS=OFF", "-DTORCHCONFORM_BUILD_PYTHON=OFF"]
    if env.cuda:
        options.append("-DTORCHCONFORM_TORCH_WITHOUT_CMAKE_CONFIG=ON")
    generator = ["-G", "Ninja"] if shutil.which("ninja") or Path(sys.executable).with_name("ninja").exists() else []
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    logs = root / "logs" / f"runner-{env.torch}-{key}"
    run_logged(["cmake", "-S", str(src), "-B", str(build), *generator, "-DCMAKE_BUILD_TYPE=Release",
                f"-DTORCHCONFORM_PYTHON={env.python}", *options], logs.with_suffix(".configure.log"),
               f"configuring torchconform-run against LibTorch {env.torch}", env={**os.environ, "PATH": path})
    run_logged(["cmake", "--build", str(build), "--target", "torchconform-run", "-j", str(jobs)],
               logs.with_suffix(".build.log"), f"building torchconform-run against LibTorch {env.torch}",
               env={**os.environ, "PATH": path})
    (build / ".torchconform-runner").write_text(env.torch + "\n")
    env.runner = str(runner)
    env.seconds["runner"] = time.perf_counter() - t0
    log(f"[upgrade] torchconform-run against LibTorch {env.torch} built in {env.seconds['runner']:.0f} s")
    return env.runner


SCHEMA = PACKAGE.parents[1] / "docs" / "corpus-schema.json"  # what schema.py reads where the core is absent


def portable_package(root: Path) -> Path:
    """A directory to put on another interpreter's ``PYTHONPATH``: this torchconform package without its compiled
    core (built for one LibTorch; exporting and the probes do not need it), laid out as in the checkout
    (``export/torchconform`` beside ``docs/corpus-schema.json``, which the exporter validates manifests with).
    Refreshed when the sources change."""
    files = sorted([*PACKAGE.rglob("*.py"), SCHEMA])
    key = digest(*(f"{p}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in files))
    out = root / "python" / key
    if not (out / "export" / "torchconform" / "__init__.py").is_file():
        tmp = out.with_name(out.name + f".partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(PACKAGE, tmp / "export" / "torchconform",
                        ignore=shutil.ignore_patterns("_core*.so", "_core*.pyd", "__pycache__", "*.pyc"))
        (tmp / "docs").mkdir()
        shutil.copyfile(SCHEMA, tmp / "docs" / "corpus-schema.json")
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    return out / "export"
