"""pytest plugin (entry point ``torchconform``): ``pytest --torchconform-corpus DIR`` verifies a corpus with the C++
runner and reports one test per result of the run: case x artifact x input set x device, named like
``simple_cnn[b4_32x32-cpu]`` (the TorchScript artifact) or ``simple_cnn:frozen[b4_32x32-cpu]`` (a variant;
``simple_cnn:export@aoti[...]`` for an exported program run with AOTInductor). Expected failures are reported as
xfailed, and an unexpected pass fails.

Inert unless the option is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("torchconform", "torchconform corpus verification")
    group.addoption("--torchconform-corpus", action="append", default=[], metavar="DIR",
                    help="verify this torchconform corpus: one test per case x input set x device (repeatable)")
    group.addoption("--torchconform-device", default="cpu", choices=("cpu", "cuda", "all"),
                    help="device(s) for --torchconform-corpus (default: cpu; cuda tests skip without CUDA)")
    group.addoption("--torchconform-aoti-cache", default="", metavar="DIR",
                    help="AOTInductor packages from `torchconform compile` (default: the runner's default cache)")


class CorpusFailure(Exception):
    pass


_RUNS: dict[tuple[str, str, str], list[Any]] = {}  # (corpus, case, device) -> results: each case runs once


class CorpusItem(pytest.Item):
    def __init__(self, *, corpus: Any, case: str, artifact: str, input_set: str, device: str, aoti_cache: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.corpus, self.case, self.artifact, self.input_set = corpus, case, artifact, input_set
        self.device, self.aoti_cache = device, aoti_cache

    def runtest(self) -> None:
        import torch

        from . import _core

        if self.device == "cuda" and not torch.cuda.is_available():
            pytest.skip("CUDA is not available to this LibTorch")
        key = (self.corpus.root, self.case, self.device)
        if key not in _RUNS:
            _RUNS[key] = _core.run_case(self.corpus, self.case, device=self.device, aoti_cache=self.aoti_cache)
        result = next((r for r in _RUNS[key] if r.artifact == self.artifact and r.input_set == self.input_set), None)
        if result is None:
            raise CorpusFailure(f"{self.name}: the runner produced no result for it")
        if result.verdict == "XFAIL":
            pytest.xfail(result.line)
        if result.verdict != "PASS":
            raise CorpusFailure(result.line)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CorpusFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return Path(self.corpus.root), None, self.name


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    dirs = config.getoption("torchconform_corpus")
    if not dirs:
        return
    import torch  # noqa: F401  (before _core)

    from . import _core

    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu", "cuda"]}[config.getoption("torchconform_device")]
    for d in dirs:
        try:
            corpus = _core.Corpus.open(d)
        except _core.CorpusError as e:
            raise pytest.UsageError(f"--torchconform-corpus {d}: {e}") from e
        prefix = "" if len(dirs) == 1 else f"{Path(d).name}::"
        for case in corpus.cases:
            for artifact, _runtime, set_name in _core.plan(corpus, case.name):
                for dev in devices:
                    name = f"{prefix}{case.name}{':' + artifact if artifact else ''}[{set_name}-{dev}]"
                    items.append(CorpusItem.from_parent(session, name=name, corpus=corpus, case=case.name,
                                                        artifact=artifact, input_set=set_name, device=dev,
                                                        aoti_cache=config.getoption("torchconform_aoti_cache"),
                                                        nodeid=name))
