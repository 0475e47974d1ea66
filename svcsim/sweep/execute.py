"""Executors: where a sweep's runs happen. One process, a local process pool, or Dask.

Each yields :class:`~svcsim.sweep.task.TaskResult` values in completion order; the sweep
puts rows back in table order, so the tables do not depend on the executor or the number of
workers. Worlds run one per process in the pool (forkserver processes, which import svcsim
once and fork from there); with Dask, as the cluster's workers are set up (threads, processes,
machines); in this process, one after another.

On Ctrl-C (:class:`KeyboardInterrupt` in the caller's thread) a pool cancels the runs not
started and waits for the running ones, which the terminal's Ctrl-C interrupts too (each
leaves nothing of itself); a Dask cluster cancels the runs not started, and runs already on
a worker finish there. Either way the finished runs' folders stay.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any, Final

from svcsim.sweep.task import RunTask, TaskResult, ignore_interrupts, run_task

PRELOADED: Final = ("svcsim.runs",)
"""Modules the pool's fork server imports once, so each worker starts without importing."""

SCHEDULER_TIMEOUT_S: Final = 30.0
"""How long to wait for the Dask scheduler before giving up."""


class ExecutorError(Exception):
    """The executor cannot run the sweep (a Dask scheduler unreachable, dask missing)."""


OnResult = Callable[[TaskResult], None]


def run_in_process(tasks: Sequence[RunTask], on_result: OnResult) -> None:
    """Run the tasks here, one after another."""
    for task in tasks:
        result = run_task(task)
        on_result(result)
        if result.interrupted:
            raise KeyboardInterrupt


def run_in_pool(tasks: Sequence[RunTask], jobs: int, on_result: OnResult) -> None:
    """Run the tasks in ``jobs`` local processes (fewer if there are fewer tasks)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOADED))
    workers = max(1, min(jobs, len(tasks)))
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=ignore_interrupts
    )
    futures = [pool.submit(run_task, task) for task in tasks]
    try:
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            on_result(result)
            if result.interrupted:
                raise KeyboardInterrupt
    except BaseException:
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        for future in futures:  # runs that finished while the pool stopped are kept too
            if future.done() and not future.cancelled() and future.exception() is None:
                late = future.result()
                if late.row is not None:
                    on_result(late)
        raise
    pool.shutdown(wait=True)


def run_on_dask(tasks: Sequence[RunTask], scheduler: str, on_result: OnResult) -> None:
    """Run the tasks on the Dask cluster whose scheduler is at ``scheduler``."""
    try:
        # Untyped, and optional (svcsim[dask]): used through Any.
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise ExecutorError(
            "--scheduler needs Dask: pip install 'svcsim[dask]' (dask[distributed])"
        ) from None
    try:
        client: Any = distributed.Client(
            scheduler, timeout=SCHEDULER_TIMEOUT_S, set_as_default=False
        )
    except (OSError, TimeoutError, ValueError) as exc:
        raise ExecutorError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        futures = client.map(run_task, list(tasks), pure=False)
        try:
            for future in distributed.as_completed(futures, loop=client.loop):
                result = future.result()
                on_result(result)
                if result.interrupted:
                    raise KeyboardInterrupt
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        client.close()
