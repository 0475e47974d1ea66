"""The names inside a run folder, and the error every run-folder problem raises.

One source of truth for the layout that :mod:`svcsim.results.runfolder` writes,
:mod:`svcsim.results.outdir` recognises and :mod:`svcsim.results.load` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from svcsim.results.schema import TABLES

RUN_FORMAT: Final = 2
"""Version of the folder layout, stored as ``run_format`` in manifest.json."""

MANIFEST: Final = "manifest.json"
SUMMARY: Final = "summary.json"
WINDOWS: Final = "windows.json"
SCENARIO: Final = "scenario.yaml"
"""The scenario as it ran, self-contained (:mod:`svcsim.scenario.replay`): what a replay reads."""
FIGURES: Final = "figures"
REPORT: Final = "report.html"
"""The HTML page ``svcsim report`` writes into a run folder by default."""
TABLE_FILES: Final[Mapping[str, str]] = {table: f"{table}.parquet" for table in TABLES}
LEVEL_TABLES: Final[frozenset[str]] = frozenset({"request_counts"})
"""Tables a run folder holds only at some record levels (``request_counts``: only at
``failures-and-aggregates``); a folder without one reads it as empty."""
REQUIRED_FILES: Final[tuple[str, ...]] = (
    MANIFEST,
    SUMMARY,
    WINDOWS,
    *(name for table, name in TABLE_FILES.items() if table not in LEVEL_TABLES),
)
"""Files every complete run folder holds."""
KNOWN_ENTRIES: Final[frozenset[str]] = frozenset(
    (*REQUIRED_FILES, *TABLE_FILES.values(), SCENARIO, FIGURES, REPORT)
)
"""Every name svcsim itself puts in a run folder (the run, then ``svcsim plot`` / ``report``)."""

PARTIAL_MARK: Final = ".partial-"
"""Infix of the hidden sibling directory a run is written into: ``.<run>.partial-<pid>-<hex>``."""


class RunFolderError(Exception):
    """A run folder cannot be written or read; the message is one line naming the folder."""
