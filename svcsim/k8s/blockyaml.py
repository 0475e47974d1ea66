"""A fast reader for plain block-style YAML, the shape of big generated manifests.

``kubectl get -o yaml`` output and generated manifests use a small part of YAML: block
mappings and lists, plain or simply quoted one-line scalars, ``---`` between documents.
Composing such a file with libyaml and converting the nodes costs ~8 s for a 12 MB
manifest (1.5 million nodes, each with two marks); reading its lines directly costs a
fraction of that. This module reads documents of that shape into exactly the
:class:`~svcsim.k8s.fields.YMap`/:class:`~svcsim.k8s.fields.YList` trees the full
converter (svcsim/k8s/load.py) builds — the same values, the same lines — and stops at
the first document that uses anything else, so that the full reader takes over from
that document's first line: the fast path decides nothing the full reader would decide
otherwise, it only skips work on text where both agree.

What it reads (anything else ends the fast path; it is never an error here):

* lines of spaces-only indentation (no tab), printable ASCII, no ``#`` except whole-line
  comments, documents separated by a bare ``---`` line;
* a document is a block mapping starting at column 0;
* ``key: value`` and ``key:`` (a nested block below, a list at the same indentation, or
  null) with plain keys of ``[A-Za-z0-9_./:-]`` (not ending in ``:``), each once;
* list items ``- value`` and ``- key: value`` (a mapping item), not ``-`` alone or
  ``- - x``;
* values: plain one-line scalars (typed by YAML 1.1 resolution as the full reader types
  them: ``80`` is an int, ``true`` a bool, a timestamp stays text), ``"text"`` without
  escapes, ``'text'`` without quotes inside, and the empty ``[]`` and ``{}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from yaml.constructor import SafeConstructor
from yaml.error import Mark
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from svcsim.k8s.fields import YList, YMap
from svcsim.k8s.yamlread import YAML_TAG, YamlValueError, scalar_value

MAX_FAST_DEPTH: Final = 50
"""Nesting the fast path reads; deeper documents go to the full reader (which allows 100)."""

_KEY: Final = r"[A-Za-z0-9_.](?:[A-Za-z0-9_./:-]*[A-Za-z0-9_./-])?"
"""A plain key: no space, not starting with an indicator, not ending in ``:``."""

_VALUE: Final = r"[\x21\x22\x24-\x7e](?:[\x20-\x22\x24-\x7e]*[\x21\x22\x24-\x7e])?"
"""One-line scalar text: printable ASCII without ``#``, no space at either end."""

_LINE: Final = re.compile(rf"^( *)(- +)?(?:({_KEY}):(?: +({_VALUE}))?|({_VALUE}))? *$")
"""A line: indentation, a list item's ``- ``, then ``key:``, ``key: value`` or a value.

The groups: (indentation, ``- ``, key, value after the key, value alone), "" where absent
(as ``findall`` gives them). A blank line matches with nothing after the indentation."""

_LINES: Final = re.compile(_LINE.pattern, re.MULTILINE)
""":data:`_LINE` for every line of a text at once (``findall``)."""

_BLANK: Final = ("", "", "", "", "")
"""The groups of a blank line, as ``findall`` gives them (a group that did not match is "")."""

_SEPARATOR: Final = re.compile(r"^--- *$", re.MULTILINE)
"""A bare document separator line."""

_PLAIN: Final = re.compile(r"[A-Za-z0-9_./=+~^$()-]")
"""How a plain scalar the fast path reads may start (not with an indicator such as ``&``).

Further checks in :meth:`_FastReader.scalar`: no ``: `` inside (that is a mapping), no
``:`` at the end, not ``-`` or ``- x`` (a list item)."""

_DOUBLE: Final = re.compile(r'"([\x20\x21\x23-\x5b\x5d-\x7e]*)"$')
"""A double-quoted scalar without escapes (no ``\\``, no ``"`` inside)."""

_SINGLE: Final = re.compile(r"'([\x20-\x26\x28-\x7e]*)'$")
"""A single-quoted scalar without ``''`` inside."""

_STR_TAG: Final = YAML_TAG + "str"
"""The tag of a plain scalar no implicit resolver claims (Resolver.DEFAULT_SCALAR_TAG)."""

_NO_MARK: Final = Mark("", 0, 0, 0, "", 0)
"""The mark of the scalar nodes built here (a problem hands the document over anyway)."""

_MISSING: Final = object()
"""What the scalar memo's ``get`` returns for a text not read yet (None is a value)."""


class _NotPlainError(Exception):
    """The current document uses YAML the fast path does not read."""


@dataclass(frozen=True, slots=True)
class FastDocument:
    """One document read by the fast path: its value and the line it starts on (1-based)."""

    data: YMap | None
    line: int


@dataclass(frozen=True, slots=True)
class Handover:
    """Where the fast path stopped: the rest of the text, from a document's first line.

    ``text`` has the lines before that document replaced by empty lines, so that the full
    reader reports the same line numbers as on the whole file.
    """

    text: str


@dataclass(slots=True)
class _Open:
    """A mapping or list still being filled, and the column of its keys or ``-``."""

    indent: int
    node: YMap | YList
    is_list: bool


class _FastReader:
    """Reads the documents of one text; owns its scalar memo (values repeat a lot)."""

    def __init__(self) -> None:
        self.constructor = SafeConstructor()
        self.implicit = Resolver.yaml_implicit_resolvers
        self.wildcard = tuple(self.implicit.get(None, ()))
        self.scalars: dict[str, Any] = {}

    def documents(self, text: str) -> Iterator[FastDocument | Handover]:
        """The documents of ``text``; a :class:`Handover` ends the iteration if one is needed."""
        begin = 0  # character offset of the current document (its --- line, if any)
        number = 0  # 0-based number of its first line
        ends = [m.start() for m in _SEPARATOR.finditer(text)]
        for end in [*ends, len(text)]:
            body = text[begin:end]
            try:
                done = self.document(body, number)
            except _NotPlainError:
                yield Handover("\n" * number + text[begin:])
                return
            if done is not None:
                yield done
            number += body.count("\n")
            begin = end

    def document(self, body: str, start: int) -> FastDocument | None:
        """One document, its first line being line ``start`` + 1 of the file; None if empty.

        ``body`` may start with the document's ``---`` line. _NotPlainError if the document
        uses YAML outside the fast path's part.
        """
        root: YMap | None = None
        stack: list[_Open] = []
        top: _Open | None = None
        pending: tuple[YMap, str, int, int] | None = None  # after `key:`: map, key, column, line
        memo = self.scalars.get
        number = start
        for spaces, dash, key, value, alone in _rows(body):
            number += 1
            if not key and not alone:
                if not dash:
                    continue  # a blank line (or a comment, or the document's own ---)
                raise _NotPlainError  # `-` alone: the item on the next lines
            col = len(spaces)
            if pending is not None:
                mapping, held, indent, key_line = pending
                pending = None
                if col > indent or (col == indent and dash):
                    # A mapping or list held by a key takes the key's line (as in load.py).
                    nested: YMap | YList = YList(key_line) if dash else YMap(key_line)
                    mapping[held] = nested
                    top = _Open(col, nested, bool(dash))
                    stack.append(top)
                    if len(stack) > MAX_FAST_DEPTH:
                        raise _NotPlainError
            if top is None:
                if col or dash:
                    raise _NotPlainError  # the fast path reads mappings at column 0
                root = YMap(number)
                top = _Open(0, root, False)
                stack.append(top)
            # Close what this line's indentation ends (a list at its key's column ends at
            # the first line of that column that is not an item).
            while top.indent > col or (top.indent == col and top.is_list and not dash):
                stack.pop()
                if not stack:
                    raise _NotPlainError
                top = stack[-1]
            if top.indent != col:
                raise _NotPlainError
            if top.is_list:
                seq = top.node
                assert isinstance(seq, YList)
                if not dash:
                    raise _NotPlainError
                seq.item_lines.append(number)
                if not key:
                    known = memo(alone, _MISSING)
                    seq.append(self.scalar(alone) if known is _MISSING else known)
                    continue
                mapping = YMap(number)
                seq.append(mapping)
                top = _Open(col + len(dash), mapping, False)
                stack.append(top)
                if len(stack) > MAX_FAST_DEPTH:
                    raise _NotPlainError
            else:
                if dash or not key:
                    raise _NotPlainError
                node = top.node
                assert isinstance(node, YMap)
                mapping = node
            if key in mapping:
                raise _NotPlainError  # a duplicate key: the full reader reports it
            mapping.key_lines[key] = number
            if not value:
                mapping[key] = None  # for now: keeps the key's place in the mapping
                pending = (mapping, key, top.indent, number)
            elif value == "[]":
                mapping[key] = YList(number)
            elif value == "{}":
                mapping[key] = YMap(number)
            else:
                known = memo(value, _MISSING)
                mapping[key] = self.scalar(value) if known is _MISSING else known
        if root is None:
            return None
        return FastDocument(root, root.line)

    def plain_tag(self, text: str) -> str:
        """The tag YAML 1.1 resolution gives the plain scalar ``text`` (not empty).

        ``Resolver.resolve`` for a plain scalar, without its per-call set-up: the implicit
        resolvers of the first character, then the wildcard ones, else ``str`` (no path
        resolvers are registered). ~130,000 distinct scalars in a 12 MB manifest.
        """
        for tag, regexp in self.implicit.get(text[0], ()):
            if regexp.match(text):
                return str(tag)
        for tag, regexp in self.wildcard:
            if regexp.match(text):
                return str(tag)
        return _STR_TAG

    def scalar(self, text: str) -> Any:
        """The value of a one-line scalar as the full reader gives it; _NotPlainError if unsure.

        Remembered in the memo (the caller looks there first).
        """
        found = _DOUBLE.match(text) or _SINGLE.match(text)
        if found is not None:
            value: Any = found.group(1)
        else:
            if (
                text in ("[]", "{}")
                or not _PLAIN.match(text)
                or ": " in text
                or text.endswith(":")
                or text == "-"
                or text.startswith("- ")
            ):
                raise _NotPlainError
            tag = self.plain_tag(text)
            if tag == _STR_TAG:
                value = text  # what SafeConstructor.construct_yaml_str gives
            else:
                try:
                    value = scalar_value(ScalarNode(tag, text, _NO_MARK), self.constructor)
                except YamlValueError:
                    raise _NotPlainError from None
        self.scalars[text] = value
        return value


def _rows(body: str) -> list[tuple[str, str, str, str, str]]:
    """The :data:`_LINE` groups of each line of ``body``; _NotPlainError if a line is not one.

    Whole-line comments and the document's own ``---`` (its first line) read as blank.
    ``findall`` reads the lines in one call; a line it skipped (not matching) makes the
    count differ, and then the lines are looked at one by one.
    """
    rows: list[tuple[str, str, str, str, str]] = _LINES.findall(body)
    if len(rows) == body.count("\n") + 1:
        if rows and rows[0][4] == "---" and not rows[0][0] and not rows[0][1]:
            rows[0] = _BLANK
        return rows
    rows = []
    for index, line in enumerate(body.split("\n")):
        found = _LINE.match(line)
        if found is not None:
            rows.append(tuple(group or "" for group in found.groups()))  # type: ignore[arg-type]
        elif line.lstrip(" ").startswith("#") or (index == 0 and line.rstrip(" ") == "---"):
            rows.append(_BLANK)
        else:
            raise _NotPlainError
    if rows and rows[0][4] == "---" and not rows[0][0] and not rows[0][1]:
        rows[0] = _BLANK
    return rows


def fast_documents(text: str) -> Iterator[FastDocument | Handover]:
    """The documents of ``text`` read by the fast path, then a :class:`Handover` if needed.

    Each :class:`FastDocument` is what the full reader gives for that document. If a
    document uses YAML outside the fast path's part, the iteration ends with a Handover
    holding the text from that document on, for the full reader.
    """
    return _FastReader().documents(text)
