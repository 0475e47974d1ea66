"""Reading attempts from either record level: a table of attempts, or of counted attempts.

At ``every-request`` each row of ``requests`` is one attempt; at ``failures-and-aggregates``
each row of ``request_counts`` stands for ``requests`` attempts sent in a span starting at
``t_s``, the first of them at ``first_t_s`` (:mod:`svcsim.results.aggregate`). Readers that
count attempts take either kind of table and weigh each row with :func:`attempt_weights`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

COUNT_COLUMN = "requests"
"""The column of ``request_counts`` holding how many attempts a row stands for."""


def attempt_weights(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Attempts per row: the ``requests`` column of counted rows, else 1 per row."""
    if COUNT_COLUMN in frame.columns:
        counts: npt.NDArray[np.int64] = frame[COUNT_COLUMN].to_numpy(dtype=np.int64)
        return counts
    return np.ones(len(frame), dtype=np.int64)


def first_sent(frame: pd.DataFrame) -> pd.Series:
    """Per row, the send time of its first attempt (``first_t_s`` of counted rows, else t_s)."""
    return frame["first_t_s"] if "first_t_s" in frame.columns else frame["t_s"]


def traffic_table(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The table that holds all of a run's attempts.

    ``request_counts`` if the run counted them (record level ``failures-and-aggregates``, with
    any traffic), else ``requests``.
    """
    counts = frames.get("request_counts")
    return counts if counts is not None and len(counts) else frames["requests"]
