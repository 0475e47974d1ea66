"""Reading YAML input safely: size, encoding, tags, aliases, nesting; each problem located.

Scenario files and Kubernetes manifests are read by two converters (one keeps a line index
by field path, the other builds line-aware :class:`~svcsim.k8s.fields.YMap` trees); both
read through this module, so both accept the same YAML and refuse the same things, with
the same limits:

* a file holds at most :data:`MAX_FILE_BYTES` bytes of UTF-8 (a bad byte is reported at its
  line and column);
* values are plain data (strings, numbers, booleans, null, mappings, lists): any other tag
  (``!custom``, ``!!binary``, ``!!set``, ``!!python/object``) is a problem, and mapping keys
  are scalars;
* aliases and ``<<`` merge keys may add at most :data:`MAX_ALIAS_NODES` nodes to a file
  (a "billion laughs" file of a few hundred bytes would otherwise take minutes and
  gigabytes), and nesting is at most :data:`MAX_NESTING` levels deep.

:class:`YamlFileError` ends the reading of a file (a limit, a syntax error); a
:class:`YamlValueError` is about one value and the converters go on after it, so one pass
reports every such value.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from svcsim.k8s.errors import quote, shorten

MAX_FILE_BYTES: Final = 16 * 1024 * 1024
"""The largest scenario or manifest file read (16 MiB; real manifests are far smaller)."""

MAX_ALIAS_NODES: Final = 1_000_000
"""How many nodes aliases (``*name``) and merge keys (``<<``) may add to one file in total."""

MAX_NESTING: Final = 100
"""How deep mappings and lists may nest (Kubernetes objects nest about 10 levels)."""

YAML_TAG: Final = "tag:yaml.org,2002:"
"""The prefix of YAML's standard tags (``!!str`` is ``tag:yaml.org,2002:str``)."""

_CONSTRUCTED: Final = frozenset(YAML_TAG + t for t in ("str", "int", "float", "bool", "null"))
"""Scalar tags whose value the safe constructor builds (``80`` -> 80, ``true`` -> True)."""

_AS_TEXT: Final = frozenset(YAML_TAG + t for t in ("timestamp", "value"))
"""Scalar tags read as their text: Kubernetes' YAML reader (go-yaml into ``interface{}``)
keeps a timestamp such as ``2024-01-01`` as a string, and a plain ``=`` is a string too."""

_NAMES: Final = {"int": "an integer", "float": "a number", "bool": "a boolean"}


class YamlFileError(Exception):
    """A problem that ends the reading of one file; ``line`` is 1-based (0: no line)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class YamlValueError(Exception):
    """A problem with one value (its tag, its text, a key); reading the file goes on."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def read_file(path: Path) -> str:
    """The text of ``path``; YamlFileError if it cannot be read, is too large or not UTF-8.

    At most :data:`MAX_FILE_BYTES` + 1 bytes are read, so a huge file, a device or a pipe
    costs no more than that.
    """
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise YamlFileError(0, f"cannot read file: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the name
        raise YamlFileError(0, f"cannot read file: {exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise YamlFileError(
            1, f"file too large: more than {MAX_FILE_BYTES:,} bytes (the limit, 16 MiB)"
        )
    return decode_utf8(data)


def decode_utf8(data: bytes) -> str:
    """``data`` decoded; YamlFileError names the line and column of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = data[exc.start]
        raise YamlFileError(
            line, f"not valid UTF-8 (byte 0x{byte:02x} at column {column})"
        ) from None


def check_text_size(text: str) -> None:
    """YamlFileError if ``text`` (given as a string, not read from a file) is too large."""
    if len(text) > MAX_FILE_BYTES:
        raise YamlFileError(1, f"text too large: more than {MAX_FILE_BYTES:,} characters")


def compose_all(text: str) -> Iterator[Node]:
    """The composed documents of ``text``; a syntax error raises YamlFileError at its line."""
    check_text_size(text)
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        yield from yaml.compose_all(text, Loader=loader_cls)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text) from None
    except RecursionError:  # the pure-Python composer recurses once per nesting level
        raise YamlFileError(1, f"yaml: nested deeper than {MAX_NESTING} levels") from None


def compose_one(text: str) -> Node | None:
    """The single document of ``text`` (None if empty); YamlFileError on a syntax error."""
    check_text_size(text)
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node: Node | None = yaml.compose(text, Loader=loader_cls)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, text) from None
    except RecursionError:
        raise YamlFileError(1, f"yaml: nested deeper than {MAX_NESTING} levels") from None
    return node


def _syntax_error(exc: yaml.YAMLError, text: str) -> YamlFileError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        parts = [p for p in (exc.context, exc.problem) if p]  # "while parsing ..., found ..."
        return YamlFileError(line, f"yaml: {', '.join(parts) or 'invalid YAML'}")
    if isinstance(exc, yaml.reader.ReaderError):
        # A character YAML does not allow in a stream (a raw escape, NUL ...): the reader
        # gives a character offset, which is turned into a line and column here.
        start = max(0, min(exc.position, len(text)))
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character))
        return YamlFileError(
            line, f"yaml: character U+{char:04X} is not allowed in YAML (column {column})"
        )
    return YamlFileError(1, f"yaml: {shorten(str(exc), 120)}")


def tag_name(tag: str) -> str:
    """A tag as written: ``!!binary`` for YAML's own tags, ``!custom`` for a local one."""
    shown = "!!" + tag.removeprefix(YAML_TAG) if tag.startswith(YAML_TAG) else tag
    return shorten(shown, 60)


def _tag_problem(node: Node) -> YamlValueError:
    kind = "unsupported" if node.tag.startswith(YAML_TAG) else "unknown"
    return YamlValueError(node.start_mark.line + 1, f"yaml: {kind} tag {tag_name(node.tag)}")


def check_collection_tag(node: MappingNode | SequenceNode) -> None:
    """YamlValueError unless ``node`` is a plain mapping or list (not ``!!set``, ``!!omap``...)."""
    plain = YAML_TAG + ("map" if isinstance(node, MappingNode) else "seq")
    if node.tag != plain:
        raise _tag_problem(node)


def scalar_value(node: ScalarNode, constructor: SafeConstructor) -> Any:
    """The value of a scalar node as Kubernetes reads it; YamlValueError for other tags.

    Strings, integers, floats, booleans and null are built by the safe constructor (YAML
    1.1 resolution, as Kubernetes' reader); a timestamp stays text. Any other tag, and a
    text its tag cannot read (``!!int abc``, an integer of more than 4300 digits), is a
    problem.
    """
    if node.tag in _AS_TEXT:
        return node.value
    if node.tag not in _CONSTRUCTED:
        raise _tag_problem(node)
    try:
        return constructor.construct_object(node, deep=True)
    except (ValueError, KeyError, TypeError, yaml.YAMLError):
        kind = _NAMES.get(node.tag.removeprefix(YAML_TAG), tag_name(node.tag))
        raise YamlValueError(
            node.start_mark.line + 1, f"yaml: cannot read {quote(node.value)} as {kind}"
        ) from None


def key_text(node: Node) -> str:
    """The text of a mapping key as written (``on:`` stays "on"); YamlValueError if not a scalar.

    Kubernetes objects are JSON: a key is a string. A list or mapping as a key (``? [a, b]``)
    has no JSON form, and building it could expand an alias bomb.
    """
    if not isinstance(node, ScalarNode):
        what = "a mapping" if isinstance(node, MappingNode) else "a list"
        raise YamlValueError(
            node.start_mark.line + 1, f"yaml: a mapping key must be a string, not {what}"
        )
    if node.tag not in _CONSTRUCTED and node.tag not in _AS_TEXT:
        raise _tag_problem(node)
    return str(node.value)


@dataclass(frozen=True, slots=True)
class Pair:
    """One key/value of a mapping; ``merged`` when it comes from a ``<<`` merge key."""

    key: Node
    value: Node
    merged: bool


def check_aliases(root: Node, *, may_alias: bool = True) -> None:
    """YamlFileError when aliases would make ``root`` too big or too deep once expanded.

    Every alias (``*name``, also under a ``<<`` merge key) stands for a copy of what it
    names; the copies may add at most :data:`MAX_ALIAS_NODES` nodes to the document, and
    the expanded document may nest at most :data:`MAX_NESTING` levels. This costs one pass
    over the composed nodes, however large the expansion, so an alias bomb is refused at
    once; the problem's line is that of the node whose copy crossed the limit.

    ``may_alias=False`` says the text holds no ``*`` (so no alias: YAML writes each as
    ``*name``); then only the depth is checked, in the same order, without the bookkeeping
    aliases need (a 12 MB manifest has 1.5 million nodes).
    """
    if may_alias:
        _Expansion().size(root, 0)
    else:
        _check_depths(root, 0)


def _check_depths(node: Node, depth: int) -> None:
    """:func:`check_depth` of ``node`` and of everything under it, parents first."""
    check_depth(depth, node)
    if isinstance(node, SequenceNode):
        for item in node.value:
            _check_depths(item, depth + 1)
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            _check_depths(key, depth + 1)
            _check_depths(value, depth + 1)


class _Expansion:
    """The expanded size of composed nodes, memoised (a node met again is an alias)."""

    __slots__ = ("active", "added", "sizes")

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.active: set[int] = set()  # nodes on the current path: a recursive alias
        self.added = 0

    def size(self, node: Node, depth: int) -> int:
        known = self.sizes.get(id(node))
        if known is not None:
            self.added += known
            if self.added > MAX_ALIAS_NODES:
                raise YamlFileError(
                    node.start_mark.line + 1,
                    f"yaml: aliases expand to more than {MAX_ALIAS_NODES:,} nodes "
                    "(the limit; is this an alias bomb?)",
                )
            return known
        if id(node) in self.active:
            return 1  # a recursive alias: the converters report it
        check_depth(depth, node)
        self.active.add(id(node))
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(self.size(item, depth + 1) for item in node.value)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                total += self.size(key, depth + 1) + self.size(value, depth + 1)
        self.active.discard(id(node))
        self.sizes[id(node)] = total
        return total


def check_depth(depth: int, node: Node) -> None:
    """YamlFileError when ``node`` sits ``depth`` levels deep, past :data:`MAX_NESTING`."""
    if depth > MAX_NESTING:
        raise YamlFileError(
            node.start_mark.line + 1, f"yaml: nested deeper than {MAX_NESTING} levels"
        )


def mapping_pairs(node: MappingNode) -> list[Pair]:
    """The pairs of ``node`` with ``<<`` merge keys resolved; a later pair overrides an earlier.

    Merged pairs come first, then the pairs written in ``node``; of several merged mappings
    (``<<: [*a, *b]``) the first wins, as YAML's merge key says. Nodes are not changed (the
    constructor's ``flatten_mapping`` rewrites them in place). A merge of something other
    than mappings is a YamlValueError. (:func:`check_aliases` bounds what merges add.)
    """
    return _pairs(node, set())


def _pairs(node: MappingNode, active: set[int]) -> list[Pair]:
    if id(node) in active:
        raise YamlValueError(node.start_mark.line + 1, "yaml: recursive merge")
    active.add(id(node))
    try:
        merged: list[Pair] = []
        own: list[Pair] = []
        for key, value in node.value:
            if key.tag != YAML_TAG + "merge":
                own.append(Pair(key, value, merged=False))
                continue
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for source in reversed(sources):  # the first mapping listed wins
                if not isinstance(source, MappingNode):
                    raise YamlValueError(
                        source.start_mark.line + 1,
                        "yaml: a merge key (<<) takes a mapping or a list of mappings",
                    )
                check_collection_tag(source)
                pairs = _pairs(source, active)
                merged.extend(Pair(p.key, p.value, merged=True) for p in pairs)
        return merged + own
    finally:
        active.discard(id(node))
