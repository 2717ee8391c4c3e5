"""The case registry: the built-in cases (``builtin/``, one file per model), the cases users declare
(``api.declare`` / ``@case`` through ``register``), and selecting cases by name.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

from .case import MODES, NAME_RE, Case, CaseError

_REGISTRY: dict[str, Case] = {}  # the users' cases, by name, in declaration order
CASES_FILE_PACKAGE = "torchconform_cases"  # what a cases file given by path is imported under (see _module_name)


def register(case: Case) -> Case:
    """Declares a user's case (api.declare and @case call this): a plain name, a known mode, declared once and not
    the name of a built-in case."""
    if not NAME_RE.match(case.name):
        raise CaseError(f"case {case.name!r}: name must match {NAME_RE.pattern}")
    if case.mode not in MODES:
        raise CaseError(f"case {case.name!r}: unknown mode {case.mode!r} (expected one of {', '.join(MODES)})")
    if case.name in _REGISTRY or case.name in {c.name for c in all_cases()}:
        raise CaseError(f"case {case.name!r} is declared twice")
    _REGISTRY[case.name] = case
    return case


def all_cases() -> list[Case]:
    """The built-in cases (users' cases come from load_user_cases)."""
    from .builtin import builtin_cases

    return builtin_cases()


def load_user_cases(spec: str) -> list[Case]:
    """Import a user's module (``mypkg.my_cases``) or file (``path/to/my_cases.py``) and return the cases it declared
    (torchconform.declare / @torchconform.case), in declaration order. Errors name the module and what went wrong."""
    import importlib
    import importlib.util
    import sys

    before = set(_REGISTRY)
    try:
        if spec.endswith(".py") or "/" in spec:
            path = Path(spec)
            if not path.is_file():
                raise CaseError(f"--cases {spec}: no such file")
            path = path.resolve()
            name = _module_name(path, sys.modules)
            module_spec = importlib.util.spec_from_file_location(name, path)
            assert module_spec and module_spec.loader
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except CaseError as e:
        raise CaseError(f"--cases {spec}: {e}") from e
    except Exception as e:  # noqa: BLE001 - the user's module failed to import: say where
        raise CaseError(f"--cases {spec}: importing it failed: {type(e).__name__}: {e}") from e
    new = [c for n, c in _REGISTRY.items() if n not in before]
    if not new:
        raise CaseError(f"--cases {spec}: it declares no cases (use torchconform.declare or @torchconform.case)")
    return new


def _module_name(path: Path, loaded: dict[str, Any]) -> str:
    """The name a cases file is imported under: ``torchconform_cases.<file stem>``, the same in every checkout and
    process. TorchScript puts it in the class names it saves (``__torch__.torchconform_cases.my_cases.Block``), so a
    name from the absolute path (or from ``hash()``, which differs per process) made a file's artifacts differ byte
    for byte between two exports; the report shows it too. A second file with the same stem gets ``_2``..."""
    stem = re.sub(r"\W", "_", path.stem) or "cases"
    stem = f"_{stem}" if stem[0].isdigit() else stem
    name, k = f"{CASES_FILE_PACKAGE}.{stem}", 2
    while name in loaded and getattr(loaded[name], "__file__", None) != str(path):
        name, k = f"{CASES_FILE_PACKAGE}.{stem}_{k}", k + 1
    return name


def select(patterns: list[str] | None, cases: list[Case] | None = None) -> list[Case]:
    """Cases (the built-in ones unless ``cases`` is given) whose names match any of the glob patterns (all of them
    when none given). An unmatched pattern is an error, so a typo never exports or checks nothing."""
    cases = all_cases() if cases is None else cases
    if not patterns:
        return cases
    chosen = []
    for pat in patterns:
        hits = [c for c in cases if fnmatch.fnmatchcase(c.name, pat)]
        if not hits:
            raise CaseError(f"--case {pat!r} matches no case (known: {', '.join(c.name for c in cases)})")
        chosen += [c for c in hits if c not in chosen]
    return chosen
