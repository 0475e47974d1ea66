"""Helpers for the fast-path tests: read a text both ways and compare the trees exactly."""

from __future__ import annotations

from typing import Any

from svcsim.k8s.blockyaml import FastDocument, Handover, fast_documents
from svcsim.k8s.fields import YList, YMap
from svcsim.k8s.load import _composed_documents


def full_reader(text: str) -> tuple[list[tuple[Any, int]], list[str]]:
    """The documents (value, line) and problems of ``text`` read by the full reader only."""
    problems: list[str] = []
    docs = [(d, line) for d, line in _composed_documents(text, "m.yaml", problems)]
    return [(d, line) for d, line in docs if d is not None], problems


def fast_then_full(text: str) -> tuple[list[tuple[Any, int]], list[str], int | None]:
    """As :func:`full_reader`, through the fast path; also how many documents it read before
    handing over (None: it read every document)."""
    docs: list[tuple[Any, int]] = []
    problems: list[str] = []
    handed: int | None = None
    for read in fast_documents(text):
        if isinstance(read, Handover):
            handed = len(docs)
            docs += _composed_documents(read.text, "m.yaml", problems)
        else:
            assert isinstance(read, FastDocument)
            docs.append((read.data, read.line))
    return [(d, line) for d, line in docs if d is not None], problems, handed


def assert_same_tree(fast: Any, full: Any, path: str = "$") -> None:
    """Equal values of equal types, with equal lines, key order, key lines and item lines."""
    assert type(fast) is type(full), f"{path}: {fast!r} vs {full!r}"
    if isinstance(full, YMap):
        assert fast.line == full.line, f"{path}: line {fast.line} vs {full.line}"
        assert list(fast) == list(full), f"{path}: keys {list(fast)} vs {list(full)}"
        assert fast.key_lines == full.key_lines, f"{path}: key lines"
        for key in full:
            assert_same_tree(fast[key], full[key], f"{path}.{key}")
    elif isinstance(full, YList):
        assert fast.line == full.line, f"{path}: line {fast.line} vs {full.line}"
        assert fast.item_lines == full.item_lines, f"{path}: item lines"
        assert len(fast) == len(full), f"{path}: {len(fast)} items vs {len(full)}"
        for i, (a, b) in enumerate(zip(fast, full, strict=True)):
            assert_same_tree(a, b, f"{path}[{i}]")
    else:
        assert fast == full, f"{path}: {fast!r} vs {full!r}"


def assert_same_reading(text: str) -> int | None:
    """The fast path and the full reader agree on ``text``; returns where it handed over."""
    full_docs, full_problems = full_reader(text)
    docs, problems, handed = fast_then_full(text)
    assert problems == full_problems
    assert [line for _, line in docs] == [line for _, line in full_docs]
    for (a, _), (b, _) in zip(docs, full_docs, strict=True):
        assert_same_tree(a, b)
    return handed
