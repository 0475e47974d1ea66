"""Loading a run folder back as DataFrames: what the CLI summary, plots and notebooks read."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from svcsim.results.counted import CountedAttempts
from svcsim.results.layout import (
    FIGURES,
    LEVEL_TABLES,
    MANIFEST,
    PARTIAL_MARK,
    REQUIRED_FILES,
    RUN_FORMAT,
    SUMMARY,
    TABLE_FILES,
    WINDOWS,
    RunFolderError,
)
from svcsim.results.schema import TABLES, conform, empty_frame
from svcsim.results.stats import endpoint_shares
from svcsim.results.tableread import read_frame
from svcsim.results.weights import traffic_table
from svcsim.results.windows import FailureWindow

WINDOW_COLUMNS = (
    "service",
    "node",
    "start_s",
    "end_s",
    "last_end_s",
    "failed",
    "total",
    "outcomes",
    "cause",
    "causes",
)
"""Columns of :attr:`Run.windows`, in order."""


@dataclass(frozen=True, slots=True, eq=False)
class Run:
    """A loaded run folder. Times are simulated seconds (``_s``); strings unless noted.

    Attributes:
        path: the run folder.
        manifest: manifest.json: the fully defaulted scenario, seed, versions, wall time,
            ``run_format``.
        summary: summary.json (see :func:`svcsim.results.summary.build_summary`).
        requests: one row per request attempt:
            t_s (float64, s) attempt start; end_s (float64, s) when the outcome was known,
            t_s + latency_s; latency_s (float64, s) including any wait for a timeout;
            workload (category); client (category: Pod name, "external@node-1",
            "host@node-2"); src_node (category); service (category, "ns/name:port");
            attempt (int16, count, 0 = first try); conn_id (int64, keep-alive connection,
            -1 none); new_flow (bool, created a conntrack entry); endpoint (category,
            "IP:port", "" if none); pod (category, "" if none); outcome (category: ok,
            refused, timeout, dropped, reset, misrouted); cause (category, "" for ok, else
            e.g. no-endpoints, stale-rule, proxy-down, stale-conntrack; see
            :class:`svcsim.results.schema.Cause`).
        events: control-plane events: t_s (float64, s); kind (category, see
            :class:`svcsim.results.schema.EventKind`); node (category, "" if none);
            object (str); detail (str).
        syncs: one row per kube-proxy sync: node (category); start_s, end_s, duration_s
            (float64, s); full (bool); ok (bool); rules_written (int64, count);
            programming_latency_s (float64, s, NaN if the sync applied no change);
            applied_through_s (float64, s: API time of the newest change it applied).
        conntrack: samples: t_s (float64, s); node (category); entries, max_entries
            (int64, count).
        windows: failure windows (windows.json), sorted by start_s: requests SENT from
            ``node`` to ``service`` in [start_s, end_s] were failing. service, node;
            start_s, end_s (float64, s, send times of the window's first and last failed
            attempt; equal for a single failure); last_end_s (float64, s, the largest
            end_s of its failed attempts: when the last failure was known, which may be
            after the next window's start); failed, total (int64, count; total = attempts of
            the pair sent in [start_s, end_s]); outcomes (dict outcome -> count); cause
            (most frequent); causes (dict cause -> count). See
            :func:`svcsim.results.windows.failure_windows` for how windows are cut.
        endpoints: per service and endpoint: service, endpoint; requests (int64, count of
            routed attempts); share (float64, fraction of the service's routed attempts).
        figures: figure name (file stem) -> path of its PNG.
        endpoint_sets: each change of the endpoint set a node's rules spread a Service's
            ClusterIP traffic over: t_s (float64, s, when the rules took it); node, service
            (category); endpoints (str: sorted "IP:port" list, comma-separated; "" for none).
            Endpoints held but never reached appear in ``endpoints`` with 0 requests.
        request_counts: (read on first use) at record level ``failures-and-aggregates``
            (``manifest["records"]``), where ``requests`` holds only the failed attempts,
            every attempt counted: t_s (float64, s, start of the span counted; spans are cut
            at whole seconds, figure bins, control-plane instants and the pair's failures),
            first_t_s (float64, s); src_node, service, endpoint, pod (category); outcome
            (category); new_flow (bool); requests (int64, count). Empty at
            ``every-request``. See :attr:`traffic`.
        counts: the ``request_counts`` table (:attr:`request_counts`), in memory or still
            in the run folder's file: :meth:`~svcsim.results.counted.CountedAttempts.batches`
            reads it in pieces (what the figures do), so loading a day-long run does not read
            tens of millions of rows.
        memo: what readers computed from the run and keep for the next reader (the figures'
            folded view of the attempts, :mod:`svcsim.plots.view`); one per Run.
    """

    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    requests: pd.DataFrame
    events: pd.DataFrame
    syncs: pd.DataFrame
    conntrack: pd.DataFrame
    windows: pd.DataFrame
    endpoints: pd.DataFrame
    figures: dict[str, Path]
    endpoint_sets: pd.DataFrame = field(default_factory=lambda: empty_frame("endpoint_sets"))
    counts: CountedAttempts = field(default_factory=CountedAttempts.empty)
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def request_counts(self) -> pd.DataFrame:
        """Every attempt, counted (see the class docstring); read from the folder on first use.

        A day-long run's table takes gigabytes in memory; :attr:`counts` reads it in pieces.
        """
        return self.counts.frame()

    @property
    def counted(self) -> bool:
        """Whether the run counted its attempts (``request_counts`` has rows)."""
        return len(self.counts) > 0

    @property
    def traffic(self) -> pd.DataFrame:
        """Every attempt of the run: ``request_counts`` when it counted them, else ``requests``.

        Rows of counted attempts weigh their ``requests`` column
        (:func:`svcsim.results.weights.attempt_weights`); the columns t_s, src_node, service,
        endpoint, pod, outcome and new_flow are in both.
        """
        return self.request_counts if self.counted else self.requests

    @classmethod
    def from_frames(
        cls,
        path: str | os.PathLike[str],
        manifest: dict[str, Any],
        frames: Mapping[str, pd.DataFrame],
        summary: dict[str, Any],
        windows: Sequence[FailureWindow],
        *,
        counts: CountedAttempts | None = None,
        conformed: bool = False,
    ) -> Run:
        """The run a folder at ``path`` will hold, before it is written (to draw its figures).

        ``counts``: the counted attempts, when they are not in ``frames`` (a streamed file).
        ``conformed``: the frames already have their tables' columns and dtypes (a
        recorder's :meth:`~svcsim.results.records.Recorder.frames` of a streamed run) and are
        used as they are: conforming makes a copy of each, which a long run cannot spare.
        """
        names = [n for n in TABLE_FILES if counts is None or n != "request_counts"]
        tables = {n: frames[n] if conformed else conform(frames[n], n) for n in names}
        window_frame = _windows_frame([w.to_dict() for w in windows])
        return _run(Path(path), manifest, summary, tables, window_frame, {}, counts=counts)


def load(path: str | os.PathLike[str]) -> Run:
    """Load the run folder at ``path``.

    Raises :class:`~svcsim.results.runfolder.RunFolderError` with one line naming the folder
    when it is missing, partial (an interrupted write), or holds a file that cannot be read.
    """
    root = Path(path)

    def fail(reason: str) -> RunFolderError:
        return RunFolderError(f"{root}: not a complete svcsim run folder ({reason})")

    if not root.exists():
        raise RunFolderError(f"{root}: no such run folder")
    if not root.is_dir():
        raise fail("not a directory")
    if PARTIAL_MARK in root.name:
        raise fail("an interrupted write left this temporary directory")
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing and (root / MANIFEST).is_file():
        failed = _read_json(root / MANIFEST, fail)
        if isinstance(failed, dict) and failed.get("exception"):
            raise fail(f"the run failed: {failed['exception']}")
    if missing:
        raise fail(f"{', '.join(missing)} missing")
    manifest = _read_json(root / MANIFEST, fail)
    if not isinstance(manifest, dict):
        raise fail(f"{MANIFEST} is not a JSON object")
    if manifest.get("run_format") != RUN_FORMAT:
        raise fail(f"{MANIFEST}: run_format {manifest.get('run_format')!r}, expected {RUN_FORMAT}")
    summary = _read_json(root / SUMMARY, fail)
    problem = summary_problem(summary)
    if problem:
        raise fail(f"{SUMMARY}: {problem}")
    windows = _read_json(root / WINDOWS, fail)
    if not isinstance(windows, list):
        raise fail(f"{WINDOWS} is not a JSON list")
    tables = {}
    counts = None
    for table, name in TABLE_FILES.items():
        if table in LEVEL_TABLES and not (root / name).is_file():
            tables[table] = empty_frame(table)  # the other record level's table
            continue
        if table == "request_counts":
            # Left on disk: read in pieces by whoever needs it (see Run.counts).
            counts = CountedAttempts(path=root / name)
            try:
                _check_counts(counts)
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise fail(f"{name}: {_one_line(exc)}") from exc
            continue
        try:
            tables[table] = read_frame(root / name, table)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise fail(f"{name}: {_one_line(exc)}") from exc
    for i, window in enumerate(windows):
        absent = [c for c in WINDOW_COLUMNS if c not in window] if isinstance(window, dict) else []
        if not isinstance(window, dict) or absent:
            what = f"lacks {', '.join(absent)}" if absent else "is not a JSON object"
            raise fail(f"{WINDOWS}: window {i} {what}")
    try:
        window_frame = _windows_frame(windows)
    except (KeyError, TypeError, ValueError) as exc:
        raise fail(f"{WINDOWS}: {_one_line(exc)}") from exc
    figures_dir = root / FIGURES
    figures = {p.stem: p for p in sorted(figures_dir.glob("*.png"))} if figures_dir.is_dir() else {}
    return _run(root, manifest, summary, tables, window_frame, figures, counts=counts)


def _check_counts(counts: CountedAttempts) -> None:
    """Raise if a ``request_counts`` file is unreadable or lacks a column (reads the footer)."""
    if counts.path is None:
        return
    names = set(pq.read_schema(counts.path).names)
    missing = [c.name for c in TABLES["request_counts"] if c.name not in names]
    if missing:
        raise ValueError(f"request_counts: missing column(s) {', '.join(missing)}")
    len(counts)


SUMMARY_SECTIONS: Final[Mapping[str, type]] = {
    "requests": dict,
    "failure_windows": list,
    "endpoints": dict,
    "uniformity": dict,
    "programming_latency": dict,
    "syncs": dict,
    "conntrack": dict,
}
"""Top-level keys of summary.json that its readers rely on, with their JSON types."""

REQUEST_COUNTS: Final[Mapping[str, type]] = {
    "total": int,
    "failed": int,
    "by_outcome": dict,
    "by_cause": dict,
}
"""Keys of summary.json's ``requests`` section, with their JSON types."""


def summary_problem(summary: Any) -> str:
    """What is wrong with the shape of a summary.json ("" if nothing), in a few words."""
    if not isinstance(summary, dict):
        return "is not a JSON object"
    if "seed" not in summary:
        return "seed is missing, expected an integer"
    seed = summary["seed"]
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        return f"seed is a {type(seed).__name__}, expected an integer"
    for section, kinds in ((None, SUMMARY_SECTIONS), ("requests", REQUEST_COUNTS)):
        where = summary if section is None else summary["requests"]
        prefix = "" if section is None else f"{section}."
        for key, kind in kinds.items():
            value = where.get(key)
            # bool is an int in Python, not in JSON.
            if not isinstance(value, kind) or isinstance(value, bool):
                found = "missing" if key not in where else f"a {type(value).__name__}"
                return f"{prefix}{key} is {found}, expected a JSON {_JSON_NAMES[kind]}"
    return ""


_JSON_NAMES: Final[Mapping[type, str]] = {int: "integer", dict: "object", list: "list"}


def _run(
    path: Path,
    manifest: dict[str, Any],
    summary: dict[str, Any],
    tables: Mapping[str, pd.DataFrame],
    windows: pd.DataFrame,
    figures: dict[str, Path],
    *,
    counts: CountedAttempts | None = None,
) -> Run:
    """A Run from conformed tables; endpoint shares include endpoints never reached.

    ``counts`` (counted attempts left in their file) are not read: the endpoint shares come
    from the summary, which holds exactly what :func:`endpoint_shares` gives.
    """
    if counts is None:
        counts = CountedAttempts(tables["request_counts"])
        endpoints = endpoint_shares(traffic_table(tables), endpoint_sets=tables["endpoint_sets"])
    else:
        endpoints = endpoints_frame(summary)
    return Run(
        path=path,
        manifest=manifest,
        summary=summary,
        requests=tables["requests"],
        events=tables["events"],
        syncs=tables["syncs"],
        conntrack=tables["conntrack"],
        windows=windows,
        endpoints=endpoints,
        figures=figures,
        endpoint_sets=tables["endpoint_sets"],
        counts=counts,
    )


def endpoints_frame(summary: Mapping[str, Any]) -> pd.DataFrame:
    """:attr:`Run.endpoints` from summary.json's ``endpoints`` section (same rows, same order)."""
    rows = [
        (str(service), str(endpoint), int(v["requests"]), _number(v["share"]))
        for service, by_endpoint in summary.get("endpoints", {}).items()
        for endpoint, v in by_endpoint.items()
    ]
    frame = pd.DataFrame(rows, columns=["service", "endpoint", "requests", "share"])
    frame["requests"] = frame["requests"].astype(np.int64)
    frame["share"] = frame["share"].astype(np.float64)
    return frame.sort_values(["service", "endpoint"], kind="stable").reset_index(drop=True)


def _number(value: Any) -> float:
    """A JSON number as written by :func:`~svcsim.results.summary.dumps_json` (null: NaN)."""
    return float("nan") if value is None else float(value)


def _read_json(path: Path, fail: Callable[[str], RunFolderError]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(f"{path.name}: {_one_line(exc)}") from exc


def _windows_frame(windows: list[Any]) -> pd.DataFrame:
    """windows.json as a DataFrame with :data:`WINDOW_COLUMNS`; dict cells stay dicts."""
    rows = [{column: w[column] for column in WINDOW_COLUMNS} for w in windows]
    frame = pd.DataFrame(rows, columns=list(WINDOW_COLUMNS))
    for column in ("start_s", "end_s", "last_end_s"):
        frame[column] = frame[column].astype("float64")
    for column in ("failed", "total"):
        frame[column] = frame[column].astype("int64")
    for column in ("service", "node", "cause"):
        frame[column] = frame[column].astype(str)
    return frame


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
