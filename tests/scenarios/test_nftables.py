"""Every shipped scenario runs in nftables mode: both engines agree, and the spread is sensible.

Each scenario's ``cluster.proxy.mode`` is overridden to ``nftables`` and the run cut short as
in test_causes.py (10 s after the first timeline action). The batched engine (numgen as one
draw and N intervals) must give the very records of the per-request reference (the table
walked by ``walk_nft`` with the same draws); failures must carry documented causes; and where
the iptables run of the same scenario spreads a workload's requests uniformly over the
endpoints it reached, the nftables run must too.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from svcsim.traffic import ReferenceEngine, TrafficEngine
from tests.scenarios.causes import check_causes, min_ok_share
from tests.scenarios.conftest import SCENARIOS_DIR
from tests.scenarios.engines import shipped_requests

UNIFORM_WITHIN = 0.05
"""Largest deviation of an endpoint's share from 1/k that still counts as a uniform spread."""


def _deviation(requests: pd.DataFrame) -> dict[str, float]:
    """Per workload: the largest |share - 1/k| over the k endpoints its served requests met."""
    ok = requests[requests["outcome"] == "ok"]
    out = {}
    for workload, group in ok.groupby("workload"):
        shares = group["endpoint"].value_counts(normalize=True)
        out[str(workload)] = float((shares - 1 / len(shares)).abs().max())
    return out


@pytest.mark.parametrize("path", sorted(SCENARIOS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_run_in_nftables_mode(path: Path) -> None:
    batched = shipped_requests(path, TrafficEngine, mode="nftables")
    reference = shipped_requests(path, ReferenceEngine, mode="nftables")
    assert len(batched) > 100
    assert (batched["outcome"] == "ok").mean() > min_ok_share(path.stem)
    check_causes(batched)
    pd.testing.assert_frame_equal(batched, reference, check_exact=True)
    iptables = _deviation(shipped_requests(path, TrafficEngine, mode="iptables"))
    nftables = _deviation(batched)
    assert nftables.keys() == iptables.keys()
    for workload, deviation in iptables.items():
        if deviation < UNIFORM_WITHIN:
            assert nftables[workload] < UNIFORM_WITHIN, workload
