"""Pausing Python's cyclic garbage collector while a compiler builds a big, acyclic state.

A full sync of a 10,000-Service cluster allocates millions of small objects (rules, matches,
strings) that all stay alive. CPython's cyclic collector runs every few hundred allocations and
periodically walks every live object, so building such a state spends most of its time (7 of 12
s, measured with ``benchmarks/compile.py``) looking for cycles that do not exist: the compiled
state is frozen dataclasses and tuples referring only downwards. Reference counting still frees
everything promptly while the collector is paused; it is switched back on (if it was on) when
the block ends, so any cycles made meanwhile are collected then.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off, then restore its previous state."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
