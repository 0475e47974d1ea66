"""``--set KEY=VALUE`` overrides: their grammar, and applying them to a scenario document.

A key is a path as problem lines print it: dotted field names with list indexes,
``cluster.proxy.minSyncPeriod``, ``workloads[0].rate``, and ``["..."]`` for a mapping key
that is not a plain name (``cluster.delays.kubeProxyWatch["node-3.x"]``). A value is read as
YAML, as the same text in the scenario file would be (``5s`` is text, ``300`` a number,
``true`` a boolean, ``[a, b]`` a list). ``KEY=V1,V2,V3`` lists several values (``svcsim
sweep``): the text is split on every comma that is not inside brackets, braces or quotes, so a
value holding a comma is written as YAML flow or quoted (``KEY=[a,b]`` is one list value,
``KEY="a,b"`` one string).

Overrides are applied to the loaded YAML document *before* validation
(:func:`apply_overrides`), so an overridden value is checked exactly as a written one and its
problems are the file's ``file:LINE: field.path: message`` lines (LINE: the overridden key's
line, or the line of the nearest mapping the file has when the key is not written there),
followed by ``(from --set KEY=VALUE)`` (:func:`mark_problems`). A key the schema does not
have is refused by validation (``unknown field``), never silently added; a list index beyond
the file's list, or a path through a value that is not a mapping or list, is refused here.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from svcsim.k8s.errors import quote
from svcsim.k8s.fields import describe
from svcsim.scenario.base import Loc
from svcsim.scenario.locate import YamlDoc, format_path, parse_yaml

SET_OPTION: Final = "--set"
"""The option's name, as problem lines quote it."""

_KEY_PART: Final = re.compile(r"""\.?([A-Za-z0-9_-]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]""")
_OPENERS: Final = {"[": "]", "{": "}"}


class OverrideError(ValueError):
    """A ``--set`` text that cannot be read; the message is one line naming the text."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One ``--set KEY=VALUES`` as given: the key's path and each value's text.

    ``texts`` are the values as written (``("0s", "1s", "5s")``); :attr:`values` the same
    read as YAML.
    """

    key: str
    path: Loc
    texts: tuple[str, ...]
    values: tuple[Any, ...]

    def single(self, value_index: int) -> Override:
        """The override that sets this key to its ``value_index``-th value."""
        return Override(self.key, self.path, self.texts[value_index], self.values[value_index])


@dataclass(frozen=True, slots=True)
class Override:
    """One key set to one value: ``key`` and ``text`` as written, ``value`` read as YAML."""

    key: str
    path: Loc
    text: str
    value: Any

    def __str__(self) -> str:
        return f"{self.key}={self.text}"

    def origin(self) -> str:
        """What problem lines caused by this override end with."""
        return f"(from {SET_OPTION} {self})"


def parse_key(key: str) -> Loc:
    """The path of a ``--set`` key; OverrideError if it is not ``name(.name|[N]|["k"])*``."""
    parts: list[str | int] = []
    at = 0
    while at < len(key):
        m = _KEY_PART.match(key, at)
        if m is None or (m[0].startswith(".") and not parts) or (m[1] and at and key[at] != "."):
            raise OverrideError(
                f"{SET_OPTION} {quote(key)}: not a field path at character {at + 1} "
                "(write it as problem lines do: cluster.proxy.minSyncPeriod, workloads[0].rate)"
            )
        if m[1] is not None:
            parts.append(m[1])
        elif m[2] is not None:
            parts.append(int(m[2]))
        else:
            parts.append(re.sub(r"\\(.)", r"\1", m[3]))
        at = m.end()
    if not parts or not isinstance(parts[0], str):
        raise OverrideError(f"{SET_OPTION} {quote(key)}: must start with a field name")
    return tuple(parts)


def split_values(text: str) -> tuple[str, ...]:
    """``text`` split on the commas outside brackets, braces and quotes; each piece stripped."""
    pieces: list[str] = []
    closers: list[str] = []
    in_quote = ""
    start = 0
    for i, ch in enumerate(text):
        if in_quote:
            if ch == in_quote:
                in_quote = ""
        elif ch in "\"'":
            in_quote = ch
        elif ch in _OPENERS:
            closers.append(_OPENERS[ch])
        elif closers and ch == closers[-1]:
            closers.pop()
        elif ch == "," and not closers:
            pieces.append(text[start:i].strip())
            start = i + 1
    pieces.append(text[start:].strip())
    return tuple(pieces)


def parse_value(text: str, where: str) -> Any:
    """``text`` read as a YAML value, as the scenario file reads values (OverrideError if bad)."""
    doc, problems = parse_yaml(text, where)
    if doc is None or problems:
        # Problem lines read "<where>:<line>: <message>": keep the message.
        first = problems[0].removeprefix(f"{where}:") if problems else "1: unreadable"
        message = first.partition(": ")[2]
        raise OverrideError(f"{SET_OPTION} {where}: not a YAML value: {message}")
    return doc.data


def parse_setting(text: str) -> Setting:
    """One ``--set`` argument, ``KEY=VALUE[,VALUE...]``, read; OverrideError if malformed."""
    key, eq, values_text = text.partition("=")
    if not eq or not key.strip():
        raise OverrideError(f"{SET_OPTION} {quote(text)}: expected KEY=VALUE")
    return make_setting(key.strip(), split_values(values_text))


def make_setting(key: str, texts: Sequence[str]) -> Setting:
    """A setting of ``key`` to each value text (not split further); OverrideError if bad."""
    path = parse_key(key)
    if not texts:
        raise OverrideError(f"{SET_OPTION} {key}: no value given")
    seen: set[str] = set()
    for value in texts:
        if value in seen:
            raise OverrideError(f"{SET_OPTION} {key}: value {quote(value)} listed twice")
        seen.add(value)
    values = tuple(parse_value(value, f"{key}={value}") for value in texts)
    return Setting(format_path(path), path, tuple(texts), values)


def parse_settings(texts: Sequence[str]) -> tuple[Setting, ...]:
    """Every ``--set`` argument read; a key given twice is an OverrideError."""
    return unique_settings([parse_setting(t) for t in texts])


def unique_settings(settings: Sequence[Setting]) -> tuple[Setting, ...]:
    """``settings`` as a tuple; OverrideError if two set the same key."""
    seen: set[Loc] = set()
    for setting in settings:
        if setting.path in seen:
            raise OverrideError(f"{SET_OPTION} {setting.key}: key given twice")
        seen.add(setting.path)
    return tuple(settings)


def single_overrides(settings: Sequence[Setting]) -> tuple[Override, ...]:
    """The overrides of settings holding one value each (``svcsim run``); else OverrideError."""
    for setting in settings:
        if len(setting.texts) != 1:
            raise OverrideError(
                f"{SET_OPTION} {setting.key}: {len(setting.texts)} values given; a single run "
                "takes one (svcsim sweep runs each; write a value holding a comma as [a,b] or "
                '"a,b")'
            )
    return tuple(s.single(0) for s in settings)


def combinations(settings: Sequence[Setting]) -> tuple[tuple[Override, ...], ...]:
    """Every choice of one value per setting, the first setting varying slowest."""
    choices = [[s.single(i) for i in range(len(s.texts))] for s in settings]
    return tuple(itertools.product(*choices))


def apply_overrides(doc: YamlDoc, overrides: Sequence[Override], source: str) -> list[str]:
    """Set each override's value in ``doc`` (data and line index); problem lines for the rest.

    Mapping keys missing on the way are created (validation then refuses those the schema
    does not have); list indexes must exist. Lines recorded under a replaced value are
    dropped, so a problem inside the new value is put on the overridden key's line.
    """
    problems: list[str] = []
    for override in overrides:
        problem = _apply(doc, override)
        if problem is not None:
            where, message = problem
            line = _line_near(doc, where)
            problems.append(f"{source}:{line}: {format_path(where)}: {message} {override.origin()}")
    return problems


def _apply(doc: YamlDoc, override: Override) -> tuple[Loc, str] | None:
    """Set one override in ``doc``; ``(path, message)`` of the problem if it cannot be."""
    node = doc.data
    path = override.path
    for depth, part in enumerate(path):
        here, last = path[: depth + 1], depth == len(path) - 1
        if isinstance(part, int):
            if not isinstance(node, list):
                return path[:depth], f"must be a list to take [{part}], got {describe(node)}"
            if part >= len(node):
                return here, f"no such item: the list has {len(node)}"
            if last:
                node[part] = copy.deepcopy(override.value)  # loads never share a value
            else:
                node = node[part]
            continue
        if not isinstance(node, dict):
            return path[:depth], f"must be a mapping to take {quote(part)}, got {describe(node)}"
        if last:
            node[part] = copy.deepcopy(override.value)
        else:
            node = node.setdefault(part, {})
            if node == {}:
                doc.containers.add(here)
    _forget_below(doc, path)
    if isinstance(override.value, dict | list):
        doc.containers.add(path)
    return None


def _forget_below(doc: YamlDoc, path: Loc) -> None:
    """Drop what the line index knew about the value at ``path`` (it has been replaced)."""
    n = len(path)
    for index in (doc.lines, doc.text_starts):
        for key in [k for k in index if len(k) > n and k[:n] == path]:
            del index[key]
    doc.text_starts.pop(path, None)
    for known in (doc.containers, doc.unreadable):
        known.difference_update({k for k in known if len(k) >= n and k[:n] == path})


def _line_near(doc: YamlDoc, path: Loc) -> int:
    """The line of ``path``, or of its nearest ancestor the file writes."""
    for n in range(len(path), 0, -1):
        if path[:n] in doc.lines:
            return doc.lines[path[:n]]
    return doc.root_line


def mark_problems(problems: Sequence[str], overrides: Sequence[Override], source: str) -> list[str]:
    """Problem lines of ``source`` about an overridden field, marked with the override.

    A problem at, inside or above an overridden key (a mapping the override created with an
    unknown name) ends with ``(from --set KEY=VALUE)``; one about a sibling of it (a check
    comparing the two, such as ``minSyncPeriod`` against an overridden ``syncPeriod``) ends
    with ``(with --set KEY=VALUE)``. Other lines are returned unchanged.
    """
    prefix = re.compile(rf"{re.escape(source)}:\d+: ")
    out = []
    for line in problems:
        m = prefix.match(line)
        rest = line[m.end() :] if m else ""
        marks = []
        for override in overrides:
            if override.origin() in line:
                continue
            field = rest.partition(": ")[0]
            if _under(rest, override.key) or (field and _under(override.key + ":", field)):
                marks.append(override.origin())
            elif field and _sibling(field, override):
                marks.append(f"(with {SET_OPTION} {override})")
        out.append(" ".join([line, *marks]))
    return out


def _sibling(field: str, override: Override) -> bool:
    """Whether problem field ``field`` is in the mapping or list holding the overridden key."""
    parent = format_path(override.path[:-1])
    return bool(parent) and _under(field + ":", parent)


def _under(text: str, key: str) -> bool:
    """Whether ``text`` starts with field path ``key`` followed by ``:``, ``.`` or ``[``."""
    return text.startswith(key) and text[len(key) : len(key) + 1] in (":", ".", "[")
