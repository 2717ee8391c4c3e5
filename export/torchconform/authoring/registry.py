"""The case registry: the built-in cases (``builtin/``, one file per model), the cases users declare
(``api.declare`` / ``@case`` through ``register``), and selecting cases by name.
"""

from __future__ import annotations

import fnmatch

from .case import MODES, NAME_RE, Case, CaseError

_REGISTRY: dict[str, Case] = {}  # the users' cases, by name, in declaration order


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
    from pathlib import Path

    before = set(_REGISTRY)
    try:
        if spec.endswith(".py") or "/" in spec:
            path = Path(spec)
            if not path.is_file():
                raise CaseError(f"--cases {spec}: no such file")
            name = f"torchconform_user_cases_{abs(hash(str(path.resolve())))}"
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
