"""Hand-made record tables for the results tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from svcsim.results.schema import conform

Row = tuple[str, str, float, float, str, str]
"""(service, src_node, t_s, latency_s, outcome, cause)."""

SVC_A = "default/a:80"
SVC_B = "default/b:80"


def requests_frame(rows: Sequence[Row], **columns: Any) -> pd.DataFrame:
    """A conformed requests table from short rows; other columns get defaults or ``columns``."""
    n = len(rows)
    frame = pd.DataFrame(
        {
            "t_s": np.array([r[2] for r in rows], dtype=np.float64),
            "latency_s": np.array([r[3] for r in rows], dtype=np.float64),
            "workload": ["w"] * n,
            "client": ["client-1"] * n,
            "src_node": [r[1] for r in rows],
            "service": [r[0] for r in rows],
            "attempt": np.zeros(n, dtype=np.int16),
            "conn_id": np.full(n, -1, dtype=np.int64),
            "new_flow": np.ones(n, dtype=bool),
            "endpoint": ["10.0.0.1:80"] * n,
            "pod": ["pod-1"] * n,
            "outcome": [r[4] for r in rows],
            "cause": [r[5] for r in rows],
        }
    )
    frame["end_s"] = frame["t_s"] + frame["latency_s"]
    for name, values in columns.items():
        frame[name] = values
    return conform(frame, "requests")


def batch(n: int, rng: np.random.Generator, **columns: Any) -> dict[str, Any]:
    """Keyword arguments for ``Recorder.add_requests``: n ok attempts, overridable."""
    t = np.sort(rng.uniform(0.0, 10.0, n))
    latency = rng.exponential(0.01, n)
    out: dict[str, Any] = {
        "t_s": t,
        "end_s": t + latency,
        "latency_s": latency,
        "workload": "web",
        "client": rng.choice(["pod-a", "pod-b", "external@node-1"], n),
        "src_node": rng.choice(["node-2", "node-1"], n),
        "service": "default/web:80",
        "attempt": np.zeros(n, dtype=np.int16),
        "conn_id": np.arange(n, dtype=np.int64),
        "new_flow": np.ones(n, dtype=bool),
        "endpoint": rng.choice(["10.0.0.2:80", "10.0.0.1:80"], n),
        "pod": rng.choice(["web-2", "web-1"], n),
        "outcome": np.full(n, "ok"),
        "cause": np.full(n, ""),
    }
    out.update(columns)
    return out
