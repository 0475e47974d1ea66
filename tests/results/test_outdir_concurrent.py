"""Run folders reserved at once under a parent that does not exist yet (a sweep's threads)."""

from __future__ import annotations

import threading
from pathlib import Path

from svcsim.results.outdir import reserve


def reserve_together(parent: Path, count: int) -> list[BaseException]:
    """Reserve ``parent/seed-i`` for ``count`` seeds from as many threads at once."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def one(seed: int) -> None:
        start.wait()
        try:
            reserve(parent / f"seed-{seed}", overwrite=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_siblings_reserved_together_all_get_their_folder(tmp_path: Path) -> None:
    for round_ in range(20):
        assert reserve_together(tmp_path / f"r{round_}" / "runs" / "point", 4) == []
