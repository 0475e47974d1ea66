"""Pausing Python's cyclic garbage collector while a compiler builds a big, acyclic state.

A full sync of a 10,000-Service cluster allocates millions of small objects (rules, matches,
strings) that all stay alive. CPython's cyclic collector runs every few hundred allocations and
periodically walks every live object, so building such a state spends most of its time (7 of 12
s, measured with ``benchmarks/compile.py``) looking for cycles that do not exist: the compiled
state is frozen dataclasses and tuples referring only downwards. Reference counting still frees
everything promptly while the collector is paused; it is switched back on (if it was on) when
the block ends, so any cycles made meanwhile are collected then.

Switched back on, the collector would still walk the whole new state once it next runs: every
object made while it was paused is in its youngest generation, and the first collection after
the block looks at all of them (~0.4 s after a 10,000-Service full compile), then the middle
generation's at all of them again. A compiler that just built such a long-lived state calls
:func:`promote_to_oldest`: the objects go straight to the oldest generation, which the
collector walks only in its rare full collections (as it would have once they got there).
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


def promote_to_oldest() -> None:
    """Move every object the collector tracks into its oldest generation, without a walk.

    ``gc.freeze`` moves all tracked objects to the permanent generation and ``gc.unfreeze``
    puts them back into the oldest one (both documented, constant time). Young objects of
    other code move too: a garbage cycle among them is then found at the next full
    collection instead of a young one. Call it after building a big state that stays alive
    (a full compile), not after every small one.
    """
    gc.freeze()
    gc.unfreeze()
