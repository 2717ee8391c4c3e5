"""The errors torchconform raises on purpose: one root, a kind for whose problem it is, and the exit status each kind
gives the ``torchconform`` command.

- :class:`UsageError`: the command's arguments or options (a flag out of range, a file that is not there);
- :class:`CorpusInputError`: a corpus, a JSON report or another input file that is unreadable, inconsistent or
  unsafe (the compiled core raises its own ``_core.CorpusError`` for what it reads; both mean the same to the CLI);
- :class:`CaseError`: a case declared wrong, or a case whose build, capture or export fails (the message names it);
- :class:`SetupError`: what this machine or interpreter lacks or cannot do (an interpreter without torch, a package
  that is not installed, a build or a process that failed, a runner of another LibTorch).

Each is a ``ValueError`` too, as these errors were before the hierarchy, so that code catching ``ValueError`` still
catches them. The CLI's exit status follows from the error (:func:`exit_status`): 2, "could not check", for every
kind; 1 stays the status of a check that ran and failed, which is never an exception. The package raises no bare
``ValueError`` or ``RuntimeError`` (tests/python/test_layout.py checks it).
"""

from __future__ import annotations

COULD_NOT_CHECK = 2  # the exit status of a command that could not check what it was asked to (README: exit statuses)


class TorchconformError(ValueError):
    """An error torchconform raised on purpose; its class says whose problem it is."""

    exit_status = COULD_NOT_CHECK


class UsageError(TorchconformError):
    """The command's arguments or options."""


class CorpusInputError(TorchconformError):
    """A corpus, a report or another input file that is unreadable, inconsistent or unsafe."""


class CaseError(TorchconformError):
    """A case declaration or a case's build is wrong; the message names the case."""


class SetupError(TorchconformError):
    """What this machine or interpreter lacks or cannot do."""


def exit_status(error: BaseException) -> int:
    """The ``torchconform`` command's exit status for an error that stopped it: the error's own where it is a
    :class:`TorchconformError`, 2 ("could not check") for the core's CorpusError and UsageError and for the operating
    system's errors (a file that cannot be read or written)."""
    return getattr(error, "exit_status", COULD_NOT_CHECK)
