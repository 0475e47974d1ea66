"""Errors raised while loading Kubernetes manifests, and the one-line form of every problem.

Every problem is one line a user can jump to from an editor or a terminal:
``file:line: Kind/namespace/name: field.path: problem``. The loader collects all problems
of all files before raising, so one run shows every mistake at once.

A problem line quotes input (names, keys, values), and input may hold newlines, escape
sequences or a megabyte of text. :func:`problem_line` is the choke point every problem line
goes through (here and in the scenario loader): control characters are escaped and the
line is capped, so one problem is always one short line. :func:`quote` renders one value
as a short excerpt. And the same problem is never printed thousands of times:
:func:`collapse_lines` shows a few lines of each shape (the text with its numbers masked)
and counts the rest.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

MAX_EXCERPT_CHARS: Final = 60
"""The longest rendering of one quoted input value in a message (longer ones end in ``…``)."""

MAX_PROBLEM_CHARS: Final = 600
"""The longest problem line; its middle is cut (``…``), keeping ``file:line`` and the end of
the message. Quoted values are excerpts already, so only a line naming many long things
reaches it (not a list of the schema's own choices, such as the 18 timeline actions after a
long file path)."""

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Characters that would break a line or restyle a terminal: C0/C1 controls, DEL, Unicode
line and paragraph separators, and bidirectional overrides (which reorder what is shown)."""

_SHORT_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    r"""``text`` with control characters escaped (``\n``, ``\x1b``), so it prints as one line."""
    return _UNSAFE.sub(_escape, text)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``…`` when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def quote(text: str, limit: int = MAX_EXCERPT_CHARS) -> str:
    """``text`` as a JSON string literal of at most about ``limit`` characters.

    Escapes are never cut in half: the excerpt is taken from ``text`` before quoting, and
    a cut excerpt ends in ``…`` inside the quotes (``"aaaa…"``).
    """
    full = json.dumps(text)
    if len(full) <= limit:
        return full
    used = 2  # the quotes
    end = 0
    for end, char in enumerate(text):  # noqa: B007 - `end` is used after the loop
        used += len(json.dumps(char)) - 2
        if used > limit - 1:
            break
    return json.dumps(text[:end])[:-1] + '\u2026"'


def problem_line(text: str) -> str:
    """``text`` made safe to print as one problem line: controls escaped, length capped."""
    line = printable(text)
    if len(line) <= MAX_PROBLEM_CHARS:
        return line
    half = (MAX_PROBLEM_CHARS - 1) // 2
    return line[:half] + "\u2026" + line[-half:]


SAME_SHAPE_SHOWN: Final = 3
"""Problems of one shape shown in full; the next one says how many more there are."""

_NUMBER: Final = re.compile(r"\d+")

_Item = TypeVar("_Item")


def shape_of(text: str) -> str:
    """``text`` with every run of digits replaced by ``#``: problems that differ only there."""
    return _NUMBER.sub("#", text)


def collapse(
    items: Sequence[_Item],
    shape: Callable[[_Item], str],
    noted: Callable[[_Item, int], _Item],
    shown: int,
) -> list[_Item]:
    """``items`` with each ``shape`` kept ``shown`` times, the next one ``noted`` with the rest.

    Order is kept; the rest of that shape is left out.
    """
    totals = Counter(shape(item) for item in items)
    seen: Counter[str] = Counter()
    out: list[_Item] = []
    for item in items:
        key = shape(item)
        seen[key] += 1
        if seen[key] <= shown:
            out.append(item)
        elif seen[key] == shown + 1:
            rest = totals[key] - shown - 1
            out.append(noted(item, rest) if rest else item)
    return out


def more_like_this(rest: int) -> str:
    """The note on the last line shown of a shape: how many were left out."""
    return f" (and {rest} more like this)"


def collapse_lines(lines: Sequence[str], shown: int = SAME_SHAPE_SHOWN) -> list[str]:
    """Problem lines with each shape cut to ``shown`` lines plus one that counts the rest.

    Order is kept; lines that appear fewer than ``shown + 2`` times are all kept.
    """
    return collapse(lines, shape_of, lambda line, rest: line + more_like_this(rest), shown)


@dataclass(frozen=True, slots=True)
class ManifestError:
    """One problem in one manifest, pointing at the line of the offending field.

    ``obj`` is ``Kind/namespace/name`` (``Kind/name`` for cluster-scoped kinds such as
    Node), or ``""`` when the problem is not about an object (YAML syntax, unreadable
    file). ``field`` is the JSON path of the field (``spec.ports[0].port``), or ``""``.
    ``line`` is 1-based; 0 means "no line" (a file that cannot be read).
    """

    source: str
    line: int
    obj: str
    field: str
    message: str

    def __str__(self) -> str:
        parts = [f"{self.source}:{self.line}" if self.line > 0 else self.source]
        if self.obj:
            parts.append(self.obj)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return problem_line(": ".join(parts))


class ManifestErrors(ValueError):  # noqa: N818 (name fixed by the project API)
    """All problems found while loading manifests; ``problems`` holds one line each."""

    def __init__(self, problems: Sequence[str]) -> None:
        if not problems:
            raise ValueError("ManifestErrors needs at least one problem")
        self.problems = [problem_line(p) for p in problems]
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in manifests:"
        return "\n".join([head, *self.problems])
