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

The groups: (indentation, ``- ``, key, value after the key, value alone). A blank line
matches with nothing after the indentation."""

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

_DOTTED: Final = re.compile(r"[0-9]+(?:\.[0-9]+){2,}")
"""Digits with two dots or more (IPv4 addresses): no YAML 1.1 implicit type takes them (a
float has one dot, an int none, a timestamp has dashes), so they are text. 110,000 of the
130,000 distinct scalars of a 10,000-Service manifest; tested against the resolvers."""

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


_SCALAR: Final = 0
"""Row kind: ``key: value`` or ``- value``, the value read (a row's last element)."""

_HOLD: Final = 1
"""Row kind: ``key:``, what it holds on the next lines (a block, a list or null)."""

_EMPTY_LIST: Final = 2
"""Row kind: ``key: []``."""

_EMPTY_MAP: Final = 3
"""Row kind: ``key: {}``."""

_SKIP: Final = 4
"""Row kind: a blank line, a whole-line comment, or the document's own ``---`` line."""

_Row = tuple[int, int, str, int, Any]
"""What one line says: its column, the width of its ``- `` (0 if none), its key ("" if
none), its kind (:data:`_SCALAR` ...) and its scalar value (None unless a scalar)."""

_SKIP_ROW: Final[_Row] = (0, 0, "", _SKIP, None)


class _FastReader:
    """Reads the documents of one text; owns its memos (lines and values repeat a lot)."""

    def __init__(self) -> None:
        self.constructor = SafeConstructor()
        self.implicit = Resolver.yaml_implicit_resolvers
        self.wildcard = tuple(self.implicit.get(None, ()))
        self.scalars: dict[str, Any] = {}
        # ~780,000 lines in a 12 MB manifest, ~150,000 of them distinct (`  conditions:`,
        # `    ready: true` ... repeat): each distinct line is matched and typed once.
        self.rows: dict[str, _Row] = {}

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

        ``body`` may start with the document's ``---`` line (and has no other). _NotPlainError
        if the document uses YAML outside the fast path's part.
        """
        # The open mapping or list on top of the stack is kept in locals (its column, node,
        # whether a list), the ones below it on the stack as tuples.
        root: YMap | None = None
        stack: list[tuple[int, YMap | YList, bool]] = []
        top_indent = -1  # no open node yet
        top_node: YMap | YList | None = None
        top_list = False
        held: str | None = None  # after `key:`: the key, its mapping, column and line
        held_map: YMap | None = None
        held_indent = 0
        held_line = 0
        mapping: YMap  # the mapping a line's key goes into
        known = self.rows.get
        read_row = self.row
        for number, text in enumerate(body.split("\n"), start + 1):
            row = known(text)
            col, dash, key, kind, value = read_row(text) if row is None else row
            if kind == _SKIP:
                continue
            if kind == _SCALAR and held is None and col == top_indent and not top_list and not dash:
                # The most common line, `key: value` in the open mapping: what the general
                # steps below would do for it (nothing to open or close), without them.
                mapping = top_node  # type: ignore[assignment]
                if key in mapping:
                    raise _NotPlainError  # a duplicate key: the full reader reports it
                mapping.key_lines[key] = number
                mapping[key] = value
                continue
            if held is not None:
                if col > held_indent or (col == held_indent and dash):
                    # A mapping or list held by a key takes the key's line (as in load.py).
                    assert held_map is not None and top_node is not None
                    nested: YMap | YList = YList(held_line) if dash else YMap(held_line)
                    held_map[held] = nested
                    stack.append((top_indent, top_node, top_list))
                    top_indent, top_node, top_list = col, nested, bool(dash)
                    if len(stack) >= MAX_FAST_DEPTH:
                        raise _NotPlainError
                held = None
            if top_node is None:
                if col or dash:
                    raise _NotPlainError  # the fast path reads mappings at column 0
                root = top_node = YMap(number)
                top_indent, top_list = 0, False
            # Close what this line's indentation ends (a list at its key's column ends at
            # the first line of that column that is not an item).
            while top_indent > col or (top_indent == col and top_list and not dash):
                if not stack:
                    raise _NotPlainError
                top_indent, top_node, top_list = stack.pop()
            if top_indent != col:
                raise _NotPlainError
            if top_list:
                if not dash:
                    raise _NotPlainError
                seq: YList = top_node  # type: ignore[assignment]
                seq.item_lines.append(number)
                if not key:
                    seq.append(value)  # `- value` (row() refused other keyless rows)
                    continue
                mapping = YMap(number)
                seq.append(mapping)
                stack.append((top_indent, top_node, top_list))
                top_indent, top_node, top_list = col + dash, mapping, False
                if len(stack) >= MAX_FAST_DEPTH:
                    raise _NotPlainError
            else:
                if dash:
                    raise _NotPlainError
                mapping = top_node  # type: ignore[assignment]
            if key in mapping:
                raise _NotPlainError  # a duplicate key: the full reader reports it
            mapping.key_lines[key] = number
            if kind == _SCALAR:
                mapping[key] = value
            elif kind == _HOLD:
                mapping[key] = None  # for now: keeps the key's place in the mapping
                held, held_map, held_indent, held_line = key, mapping, top_indent, number
            elif kind == _EMPTY_LIST:
                mapping[key] = YList(number)
            else:
                mapping[key] = YMap(number)
        if root is None:
            return None
        return FastDocument(root, root.line)

    def row(self, text: str) -> _Row:
        """What the line ``text`` says (remembered); _NotPlainError if the fast path cannot say.

        A line with neither a key nor ``-`` is a blank line, a whole-line comment, or a
        ``---`` line, which is a document's first line (the text is cut at each one); ``-``
        alone (the item on the next lines) and a bare value (never valid where the fast
        path reads) end the fast path.
        """
        found = _LINE.match(text)
        if found is None:
            if not text.lstrip(" ").startswith("#"):
                raise _NotPlainError
            row = _SKIP_ROW
        else:
            spaces, dash, key, value, alone = found.groups(default="")
            col, width = len(spaces), len(dash)
            if key:
                if not value:
                    row = (col, width, key, _HOLD, None)
                elif value == "[]":
                    row = (col, width, key, _EMPTY_LIST, None)
                elif value == "{}":
                    row = (col, width, key, _EMPTY_MAP, None)
                else:
                    row = (col, width, key, _SCALAR, self.scalar(value))
            elif alone and dash:
                row = (col, width, "", _SCALAR, self.scalar(alone))
            elif alone == "---" and not col:
                row = _SKIP_ROW
            elif alone or dash:
                raise _NotPlainError
            else:
                row = _SKIP_ROW
        self.rows[text] = row
        return row

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

        Remembered in the memo (a value such as a Service's name recurs on other lines).
        """
        known = self.scalars.get(text, _MISSING)
        if known is not _MISSING:
            return known
        if _DOTTED.fullmatch(text):
            value: Any = text  # plain text (see _DOTTED): the steps below would say the same
        elif (found := _DOUBLE.match(text) or _SINGLE.match(text)) is not None:
            value = found.group(1)
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


def fast_documents(text: str) -> Iterator[FastDocument | Handover]:
    """The documents of ``text`` read by the fast path, then a :class:`Handover` if needed.

    Each :class:`FastDocument` is what the full reader gives for that document. If a
    document uses YAML outside the fast path's part, the iteration ends with a Handover
    holding the text from that document on, for the full reader.
    """
    return _FastReader().documents(text)
