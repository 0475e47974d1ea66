"""Drawing a run's figures on several cores, with the bytes one core would give.

Rasterising text and markers is most of a run's drawing time (a 10-minute 100-node run spent
9 s drawing five figures, one core busy), and the figures do not depend on each other. So
:func:`draw_in_parallel` forks worker processes, each drawing some of the figures from the
same loaded :class:`~svcsim.results.Run` (inherited, not pickled) with the same code, and
hands back only PNG bytes: the output is the serial output whichever worker draws what
(tests compare the bytes). Figures are assigned up front by a fixed estimate of their cost
(:data:`COST`), so the split is the same on every run.

What every figure reads first is computed once, in the parent, before forking (the folded
view of counted attempts: :func:`svcsim.plots.save.render_all` asks for it), so that no
worker repeats it. Where ``fork`` is
not available, or with one core, everything is drawn in this process; a worker that fails
or dies has its figures drawn here instead, so a figure is never lost to the parallelism.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Final

from svcsim.results import Run

COST: Final[Mapping[str, float]] = {
    "outcome_timeline": 4.0,
    "chain_check": 4.0,
    "endpoint_shares": 2.5,
    "conntrack_usage": 0.7,
    "rule_staleness": 0.5,
}
"""Relative drawing cost of each standard figure (measured on the 100-node day, 10 minutes
to 4 hours); a figure not listed counts 1. Only the split between workers depends on it."""

Draw = Callable[[Run, str], bytes]


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def split(names: Sequence[str], workers: int) -> list[list[str]]:
    """``names`` dealt to ``workers`` lists, the costliest first to the least loaded.

    Deterministic: ties go to the lower worker; each list keeps the order of ``names``.
    """
    loads = [0.0] * max(workers, 1)
    dealt: list[list[str]] = [[] for _ in loads]
    for name in sorted(names, key=lambda n: (-COST.get(n, 1.0), names.index(n))):
        k = min(range(len(loads)), key=lambda i: (loads[i], i))
        loads[k] += COST.get(name, 1.0)
        dealt[k].append(name)
    order = {n: i for i, n in enumerate(names)}
    return [sorted(d, key=order.__getitem__) for d in dealt if d]


def draw_in_parallel(
    run: Run, names: Sequence[str], draw: Draw, *, jobs: int | None = None
) -> dict[str, bytes]:
    """``{name: draw(run, name)}`` for every name, in the order of ``names``.

    ``jobs``: processes drawing at once (this one included); default: the usable cores.
    """
    wanted = jobs if jobs is not None else usable_cores()
    if wanted < 1:
        raise ValueError(f"jobs must be at least 1, not {wanted!r}")
    shares = split(names, min(wanted, len(names)))
    if len(shares) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return {name: draw(run, name) for name in names}
    context = multiprocessing.get_context("fork")
    workers = []
    for share in shares[1:]:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker, args=(run, share, draw, send), name="svcsim-draw", daemon=True
        )
        process.start()
        send.close()  # the worker holds the sending end
        workers.append((share, process, receive))
    drawn = {name: draw(run, name) for name in shares[0]}
    for share, process, receive in workers:
        drawn.update(_collect(run, share, draw, process, receive))
    return {name: drawn[name] for name in names}


def _worker(run: Run, share: list[str], draw: Draw, send: Connection) -> None:
    """In a forked process: draw ``share`` and send ``{name: bytes}`` (or None on an error)."""
    try:
        result: dict[str, bytes] | None = {name: draw(run, name) for name in share}
    except Exception:  # the parent draws them again and reports what it meets
        result = None
    send.send(result)
    send.close()


def _collect(
    run: Run,
    share: list[str],
    draw: Draw,
    process: multiprocessing.process.BaseProcess,
    receive: Connection,
) -> dict[str, bytes]:
    """A worker's figures; drawn here when it failed or died without sending them."""
    try:
        got = receive.recv()
    except EOFError:  # died (killed, out of memory) before sending
        got = None
    finally:
        receive.close()
        process.join()
    if not isinstance(got, dict):
        return {name: draw(run, name) for name in share}
    return got
