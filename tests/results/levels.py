"""Re-recording a run's tables at record level ``failures-and-aggregates`` (test helper).

The attempts go to a fresh :class:`~svcsim.results.records.Recorder` as a simulation hands
them over: in order of ``end_s`` (when their outcome was known), in several batches, with the
watermark after each batch at the earliest send time still to come.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from svcsim.results.records import Recorder
from svcsim.results.schema import REQUESTS, TABLES, Kind, RecordLevel


def c_kind(values: pd.Series) -> bool:
    """Whether ``values`` is categorical (Enum columns go in as their codes)."""
    return isinstance(values.dtype, pd.CategoricalDtype)


def recount(
    frames: Mapping[str, pd.DataFrame], span_s: float, batches: int = 7
) -> dict[str, pd.DataFrame]:
    """``frames`` (an every-request run's tables) as the aggregated level records them."""
    recorder = Recorder(RecordLevel.FAILURES_AND_AGGREGATES, span_s=span_s)
    for row in frames["events"].itertuples(index=False):
        recorder.add_event(row.t_s, row.kind, node=row.node, object=row.object, detail=row.detail)
    for row in frames["syncs"].itertuples(index=False):
        recorder.add_sync(
            node=row.node,
            start_s=row.start_s,
            end_s=row.end_s,
            full=row.full,
            ok=row.ok,
            rules_written=row.rules_written,
            programming_latency_s=row.programming_latency_s,
            applied_through_s=row.applied_through_s,
        )
    for row in frames["endpoint_sets"].itertuples(index=False):
        recorder.add_endpoint_set(row.t_s, row.node, row.service, row.endpoints.split(","))
    requests = frames["requests"]
    order = np.argsort(requests["end_s"].to_numpy(), kind="stable")
    t = requests["t_s"].to_numpy(dtype=np.float64)
    parts = [p for p in np.array_split(order, batches) if len(p)]
    columns = {c.name: requests[c.name] for c in REQUESTS}
    categories = {
        c.name: [str(v) for v in requests[c.name].cat.categories]
        for c in REQUESTS
        if c.kind is Kind.CATEGORY
    }
    for i, part in enumerate(parts):
        batch = {
            name: np.asarray(values.cat.codes)[part]
            if name in categories or c_kind(values)
            else values.to_numpy()[part]
            for name, values in columns.items()
        }
        recorder.add_requests_coded(categories, **batch)
        rest = np.concatenate(parts[i + 1 :]) if i + 1 < len(parts) else part[:0]
        recorder.advance(float(t[rest].min()) if len(rest) else span_s)
    recorder.finish()
    out = recorder.frames()
    out["conntrack"] = frames["conntrack"]
    return {name: out[name] for name in TABLES}
