"""Results: the recorder, failure windows, distribution statistics and the run folder.

Pure data handling (numpy, pandas, pyarrow, scipy); no SimPy. The simulation fills a
:class:`Recorder`; :func:`write_run` turns its frames into a run folder; :func:`load` reads one
back for the CLI, plots and notebooks.
"""

from svcsim.results.load import Run, load
from svcsim.results.records import Recorder
from svcsim.results.runfolder import RunFolderError, write_failed_run, write_run
from svcsim.results.schema import TABLES, Cause, Column, EventKind, Outcome, conform
from svcsim.results.stats import (
    EndpointSetChange,
    endpoint_set_changes,
    endpoint_shares,
    programming_latency,
    shares_over_time,
    stable_intervals,
    uniformity_tests,
)
from svcsim.results.summary import build_summary, dumps_json
from svcsim.results.windows import FailureWindow, failure_windows

__all__ = [
    "TABLES",
    "Cause",
    "Column",
    "EndpointSetChange",
    "EventKind",
    "FailureWindow",
    "Outcome",
    "Recorder",
    "Run",
    "RunFolderError",
    "build_summary",
    "conform",
    "dumps_json",
    "endpoint_set_changes",
    "endpoint_shares",
    "failure_windows",
    "load",
    "programming_latency",
    "shares_over_time",
    "stable_intervals",
    "uniformity_tests",
    "write_failed_run",
    "write_run",
]
