"""Corpus text on its way out: one escaping function per output kind, used by every face.

A corpus is data that anyone who can commit to it may have written: case names, descriptions, xfail reasons, error
messages, submodule paths and library names reach terminals, Markdown reports, JUnit XML and JSON files. Each kind
of output has one function here, built on the core's ``printable`` (the runner's own definition: control, bidi and
zero-width characters and invalid bytes become visible escapes), so that no corpus can forge a PASS line, a heading, a
table row or an XML attribute, in any face.
"""

from __future__ import annotations

import json
import re
from typing import Any

_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#!~"})
_XML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"})


def terminal(text: Any) -> str:
    """For a terminal or a log line: one line, nothing that moves the cursor, ends the line or reorders what is
    shown."""
    from . import _core

    if _core is None:  # another PyTorch's interpreter (torchconform upgrade's exports): the parent reads its output
        return _without_core(str(text))
    return _core.printable(str(text))


def _without_core(text: str) -> str:
    """What an interpreter without the core prints (an export by another PyTorch, whose output the parent reads and
    escapes again with the core's printable): every control, format (bidi, zero-width), separator and unassigned
    character as a visible escape."""
    import unicodedata

    def visible(c: str) -> str:
        if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            return c
        n = ord(c)
        return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"

    return "".join(visible(c) for c in text)


def markdown(text: Any) -> str:
    """For Markdown prose and table cells: terminal-safe first, then every character Markdown would act on
    backslash-escaped. A manifest cannot forge a headline, a heading, a link or a table row."""
    return terminal(text).translate(_MARKDOWN)


def markdown_code(text: Any) -> str:
    """For an inline code span in Markdown: a backtick fence longer than any run of backticks inside (CommonMark),
    pipes escaped (GitHub tables split cells on them even in code)."""
    body = terminal(text).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", body)), default=0) + 1)
    return f"{fence} {body} {fence}"


def xml(text: Any) -> str:
    """For XML text and attribute values (JUnit): terminal-safe first (XML 1.0 cannot hold most control characters,
    even as character references), then the five markup characters as entities."""
    return terminal(text).translate(_XML)


def json_text(value: Any, **kwargs: Any) -> str:
    """For JSON files: every non-ASCII and control character as a \\u escape, so that a tool printing a field of it
    cannot be handed raw terminal or bidi controls either."""
    return json.dumps(value, ensure_ascii=True, **kwargs)
