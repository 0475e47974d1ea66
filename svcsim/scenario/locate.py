"""From YAML text to data plus the line of every key, and from pydantic errors to user lines.

:func:`parse_yaml` composes the document to nodes (so lines are known), converts it to plain
dicts/lists, and indexes the line of every mapping key and list item by its path.
:func:`problem_line` turns one pydantic error into ``file:LINE: field.path: message`` with
the line of the offending key (for a missing key, the line of the mapping that lacks it).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from svcsim.k8s.errors import MAX_EXCERPT_CHARS, quote
from svcsim.k8s.fields import describe
from svcsim.k8s.yamlread import (
    YamlFileError,
    YamlValueError,
    check_aliases,
    check_collection_tag,
    compose_one,
    key_text,
    mapping_pairs,
    scalar_value,
)
from svcsim.scenario.base import Loc, SchemaModel

BLOCK_STYLES = ("|", ">")

CUSTOM_TAG_KEYS = {"connection_model": "model"}
"""Error types of unions with a callable discriminator, and the key holding their tag."""


@dataclass(slots=True)
class YamlDoc:
    """One YAML document as plain data, with the 1-based line of each path in it.

    ``lines`` maps a path (keys and list indexes) to the line of its key or list item;
    ``containers`` holds the paths whose value is a mapping or a list; ``text_starts``
    maps the path of a string scalar to the line its text starts on (the line after
    ``|``/``>`` for block scalars), so an inline manifest's lines can be mapped back;
    ``unreadable`` holds the paths whose value could not be read (already reported).
    """

    data: Any = None
    root_line: int = 1
    lines: dict[Loc, int] = field(default_factory=dict)
    containers: set[Loc] = field(default_factory=set)
    text_starts: dict[Loc, int] = field(default_factory=dict)
    unreadable: set[Loc] = field(default_factory=set)


def parse_yaml(text: str, source: str) -> tuple[YamlDoc | None, list[str]]:
    """The single document of ``text``, and problem lines (bad values, duplicate keys).

    Returns None for the document when the text cannot be read as a whole (a syntax
    error, a limit of :mod:`svcsim.k8s.yamlread` exceeded); the one problem says why.
    """
    problems: list[str] = []
    try:
        root = compose_one(text)
        doc = YamlDoc()
        if root is None:
            return doc, problems
        doc.root_line = root.start_mark.line + 1
        check_aliases(root)
        doc.data = _Converter(source, doc, problems).convert(root, (), 0)
    except YamlFileError as exc:
        return None, [f"{source}:{exc.line}: {exc.message}"]
    return doc, problems


class _Converter:
    """Builds plain data from nodes, filling the line index of a :class:`YamlDoc`.

    A value that cannot be read (an unknown tag, a list as a key) is reported, read as
    null, and its path added to ``doc.unreadable``. Sizes and depths were checked before
    (:func:`~svcsim.k8s.yamlread.check_aliases`), so converting every copy is bounded.
    """

    def __init__(self, source: str, doc: YamlDoc, problems: list[str]) -> None:
        self.source = source
        self.doc = doc
        self.problems = problems
        self.constructor = SafeConstructor()
        self.active: set[int] = set()  # nodes on the current path: a recursive alias ends here

    def problem(self, line: int, path: Loc, message: str) -> None:
        where = f"{format_path(path)}: " if path else ""
        self.problems.append(f"{self.source}:{line}: {where}{message}")
        self.doc.unreadable.add(path)

    def convert(self, node: Node, path: Loc, depth: int) -> Any:
        """The plain value of ``node`` at ``path`` (``depth`` is bounded by check_aliases)."""
        line = node.start_mark.line + 1
        if id(node) in self.active:
            self.problem(line, path, "yaml: recursive alias")
            return None
        try:
            if isinstance(node, MappingNode | SequenceNode):
                check_collection_tag(node)
                self.active.add(id(node))
                try:
                    if isinstance(node, MappingNode):
                        return self.mapping(node, path, depth)
                    return self.sequence(node, path, depth)
                finally:
                    self.active.discard(id(node))
            assert isinstance(node, ScalarNode)
            value = scalar_value(node, self.constructor)
        except YamlValueError as exc:
            self.problem(exc.line, path, exc.message)
            return None
        if isinstance(value, str):
            block = node.style in BLOCK_STYLES
            self.doc.text_starts[path] = node.start_mark.line + (2 if block else 1)
        return value

    def sequence(self, node: SequenceNode, path: Loc, depth: int) -> list[Any]:
        self.doc.containers.add(path)
        out_list = []
        for i, item in enumerate(node.value):
            self.doc.lines[(*path, i)] = item.start_mark.line + 1
            out_list.append(self.convert(item, (*path, i), depth + 1))
        return out_list

    def mapping(self, node: MappingNode, path: Loc, depth: int) -> dict[str, Any]:
        self.doc.containers.add(path)
        out: dict[str, Any] = {}
        written: set[str] = set()
        for pair in mapping_pairs(node):
            line = pair.key.start_mark.line + 1
            try:
                # Keys as written: `on:` stays "on", `1:` is "1" (a YAML 1.1 reader would differ).
                key = key_text(pair.key)
            except YamlValueError as exc:
                self.problem(exc.line, path, exc.message)
                continue
            sub = (*path, key)
            if not pair.merged:
                # A key written twice is a mistake; a written key overriding a merged one is not.
                if key in written:
                    self.problems.append(
                        f"{self.source}:{line}: {format_path(sub)}: "
                        f"duplicate key (first at line {self.doc.lines[sub]})"
                    )
                    continue
                written.add(key)
            self.doc.lines[sub] = line
            out[key] = self.convert(pair.value, sub, depth + 1)
        return out


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_path(parts: Iterable[str | int]) -> str:
    """``workloads[0].from.pods["app.kubernetes.io/name"]`` from its parts."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part) and len(part) <= MAX_EXCERPT_CHARS:
            out += f".{part}" if out else part
        else:
            out += f"[{quote(part)}]"  # an excerpt: a key may be a megabyte long
    return out


def locate(doc: YamlDoc, loc: Sequence[str | int], tags: frozenset[str]) -> tuple[int, Loc]:
    """The line and the file path of a pydantic error location.

    Parts of ``loc`` that are not in the file are handled so: a union tag in ``tags``
    (``timeline[0].block-sync.for``) is dropped; pydantic's ``[key]`` marker (a bad
    mapping key) is dropped; any other absent part keeps the line of the deepest part
    that is in the file (a missing key is blamed on the mapping that lacks it). Below a
    scalar of the file (``nodes: 3`` expanded into a list) the path stops at the scalar.
    """
    parts = [p for p in loc if p != "[key]"]
    found: Loc = ()
    printed: list[str | int] = []
    line = doc.root_line
    absent = False
    for n, part in enumerate(parts):
        candidate = (*found, part)
        if not absent and candidate in doc.lines:
            found = candidate
            printed.append(part)
            line = doc.lines[candidate]
            if candidate not in doc.containers:
                break
            continue
        if isinstance(part, str) and part in tags and n < len(parts) - 1:
            continue
        absent = True
        printed.append(part)
    return line, tuple(printed)


def error_loc(err: ErrorDetails) -> Loc:
    """Where an error is; a tagged-union error is put on the tag's key (``timeline[1].action``)."""
    loc = tuple(err["loc"])
    if err["type"] in CUSTOM_TAG_KEYS:
        return (*loc, CUSTOM_TAG_KEYS[err["type"]])
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        key = _unquote((err.get("ctx") or {}).get("discriminator", ""))
        if key:
            return (*loc, key)
    return loc


def error_message(
    err: ErrorDetails, vocabulary: Sequence[str], root: type[BaseModel] | None = None
) -> str:
    """A short message for one pydantic error, in the style ``must be > 0, got -5``.

    ``root`` is the model validated: an unknown field is then told the fields of the mapping
    it is in (or the closest of them).
    """
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    got = describe(err.get("input"))
    bounds = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"must be {bounds[kind]} {_number(limit)}, got {got}"
    value = err.get("input")
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return f"must be a finite number, got {got}"  # an integer beyond a float's range
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        key = str(err["loc"][-1]) if err["loc"] else ""
        here = fields_at(root, tuple(err["loc"])[:-1]) if root is not None else None
        if here is not None:
            # A typo'd or cut-short key (minSync, pod): the field it begins; never for one or
            # two letters, which begin too much.
            close = (
                [f for f in here if f.lower().startswith(key.lower())][:1] if len(key) > 2 else []
            )
            close = close or difflib.get_close_matches(key, here, n=1, cutoff=0.75)
            if close:
                return f"unknown field (did you mean {close[0]!r}?)"
            if len(here) <= MAX_FIELDS_LISTED:
                return f"unknown field (fields here: {', '.join(here)})"
        if key in vocabulary:
            return "not a field here"  # valid elsewhere: a suggestion would only confuse
        close = difflib.get_close_matches(key, vocabulary, n=1, cutoff=0.75)
        return "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "literal_error":
        return f"must be {ctx.get('expected', '?')}, got {got}"
    if kind == "union_tag_invalid":
        return f"must be one of {ctx.get('expected_tags')}; got {describe(ctx.get('tag'))}"
    if kind == "union_tag_not_found":
        return "required"
    if kind in CUSTOM_TAG_KEYS:
        return f"{err['msg']}, got {describe(_tag_of(err))}"
    simple = {
        ("int_type", "int_parsing", "int_from_float"): "must be an integer",
        ("float_type", "float_parsing"): "must be a number",
        ("finite_number",): "must be a finite number",
        ("bool_type", "bool_parsing"): "must be true or false",
        ("string_type",): "must be a string",
        ("dict_type", "model_type", "model_attributes_type"): "must be a mapping",
        ("list_type", "tuple_type"): "must be a list",
        ("string_pattern_mismatch",): "must be lowercase letters, digits and '-', starting and "
        "ending alphanumeric",
    }
    for kinds, text in simple.items():
        if kind in kinds:
            return f"{text}, got {got}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"must have at least {n} item{'s' if n != 1 else ''}"
    if kind == "string_too_long":
        return f"must be no more than {ctx.get('max_length')} characters"
    return str(err["msg"]).removeprefix("Value error, ")


def _tag_of(err: ErrorDetails) -> Any:
    value = err.get("input")
    key = CUSTOM_TAG_KEYS.get(err["type"], "")
    return value.get(key) if isinstance(value, dict) else value


def _number(value: Any) -> Any:
    """``0`` rather than ``0.0`` for a float bound that is a whole number."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _unquote(value: Any) -> str:
    return str(value).strip("'")


MAX_FIELDS_LISTED = 12
"""An unknown field's message lists the mapping's fields when it has at most this many."""


def fields_at(root: type[BaseModel], loc: Sequence[str | int]) -> tuple[str, ...] | None:
    """The YAML keys of the model at ``loc`` under ``root`` (sorted); None if not a model.

    Follows fields (by alias), list items, mapping values, optional and annotated types; in a
    union of models, a loc part naming a member's tag (``block-sync``) picks that member.
    """
    node: Any = root
    parts = list(loc)
    while True:
        node = _unwrap(node)
        if isinstance(node, tuple):  # a union of models: the tag in loc picks one
            if not parts:
                return None
            tag = parts.pop(0)
            node = next((m for m in node if tag in _tags(m)), None)
            if node is None:
                return None
            continue
        if not parts:
            break
        part = parts.pop(0)
        origin = typing.get_origin(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            info = next((i for n, i in node.model_fields.items() if (i.alias or n) == part), None)
            if info is None:
                return None
            node = info.annotation
        elif origin in (list, tuple, Sequence) and isinstance(part, int):
            node = typing.get_args(node)[0]
        elif origin in (dict, Mapping) and isinstance(part, str):
            node = typing.get_args(node)[1]
        else:
            return None
    if isinstance(node, type) and issubclass(node, BaseModel):
        return tuple(sorted(i.alias or n for n, i in node.model_fields.items()))
    return None


def _unwrap(node: Any) -> Any:
    """``node`` without Annotated/Optional; a union of several models as a tuple of them."""
    while True:
        origin = typing.get_origin(node)
        if origin is typing.Annotated:
            node = typing.get_args(node)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(node) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(args) == 1:
                node = args[0]
            elif len(models) > 1:
                return tuple(models)
            elif models:
                node = models[0]
            else:
                return node
        else:
            return node


def _tags(model: type[BaseModel]) -> tuple[str, ...]:
    """The literal values a union member's fields take (its tag, e.g. ``block-sync``)."""
    out: list[str] = []
    for info in model.model_fields.values():
        if typing.get_origin(info.annotation) is typing.Literal:
            out.extend(str(v) for v in typing.get_args(info.annotation))
    return tuple(out)


def field_vocabulary(root: type[BaseModel] = SchemaModel) -> tuple[str, ...]:
    """Every YAML key of every scenario model (for "did you mean" suggestions)."""
    seen: set[str] = set()
    todo: list[type[BaseModel]] = [root]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        for name, info in cls.model_fields.items():
            seen.add(info.alias or name)
    return tuple(sorted(seen))
