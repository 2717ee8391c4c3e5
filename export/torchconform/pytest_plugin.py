"""pytest plugin (entry point ``torchconform``): ``pytest --torchconform-corpus DIR`` verifies a corpus with the C++
runner and reports one test per case x input set x device, named like ``simple_cnn[b4_32x32-cpu]``.

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


class CorpusFailure(Exception):
    pass


class CorpusItem(pytest.Item):
    def __init__(self, *, corpus: Any, case: str, input_set: str, device: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.corpus, self.case, self.input_set, self.device = corpus, case, input_set, device

    def runtest(self) -> None:
        import torch

        from . import _core

        if self.device == "cuda" and not torch.cuda.is_available():
            pytest.skip("CUDA is not available to this LibTorch")
        (result,) = _core.run_case(self.corpus, self.case, device=self.device, sets=[self.input_set])
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
            for s in case.input_sets:
                for dev in devices:
                    items.append(CorpusItem.from_parent(session, name=f"{prefix}{case.name}[{s.name}-{dev}]",
                                                        corpus=corpus, case=case.name, input_set=s.name,
                                                        device=dev, nodeid=f"{prefix}{case.name}[{s.name}-{dev}]"))
