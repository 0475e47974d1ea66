"""The summary's per-node sections: grouped on node codes, the same for any node dtype."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from svcsim.results.summary import _conntrack, _programming_latency, _syncs

NODES = ["node-2", "node-10", "node-1", "node-2", "node-10"]


def _node_column(kind: str) -> object:
    if kind == "str":
        return NODES
    # Categories in first-seen order, one never used: sorted and dropped all the same.
    return pd.Categorical(NODES, categories=["node-2", "node-10", "node-1", "node-9"])


@pytest.mark.parametrize("kind", ["str", "category"])
def test_per_node_sections(kind: str) -> None:
    syncs = pd.DataFrame(
        {
            "node": _node_column(kind),
            "ok": [True, False, True, False, True],
            "programming_latency_s": [1.0, np.nan, 0.5, 3.0, np.nan],
        }
    )
    conntrack = pd.DataFrame(
        {"node": _node_column(kind), "entries": [5, 7, 1, 9, 2], "max_entries": [100] * 5}
    )
    frames = {"syncs": syncs, "conntrack": conntrack}
    # Sorted as strings ("node-10" before "node-2"), as summary.json always had them.
    assert _syncs(frames) == {
        "node-1": {"total": 1, "failed": 0},
        "node-10": {"total": 2, "failed": 1},
        "node-2": {"total": 2, "failed": 1},
    }
    assert _conntrack(frames) == {
        "node-1": {"peak_entries": 1, "max_entries": 100},
        "node-10": {"peak_entries": 7, "max_entries": 100},
        "node-2": {"peak_entries": 9, "max_entries": 100},
    }
    latency = _programming_latency(frames)
    assert list(latency) == ["node-1", "node-10", "node-2"]
    assert latency["node-2"]["syncs_with_trigger"] == 2 and latency["node-2"]["max_s"] == 3.0
    assert latency["node-10"]["syncs_with_trigger"] == 0
