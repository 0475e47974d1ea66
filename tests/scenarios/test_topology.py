"""topology-hints: PreferClose keeps each zone's traffic home; Auto hints come and go."""

from __future__ import annotations

import pandas as pd

from tests.scenarios.conftest import ShippedRun
from tests.scenarios.timing import event_times, first_sync, requests


def zone_of(endpoint: pd.Series) -> pd.Series:
    """Node CIDRs 10.244.0/1/2.0/24 belong to node-1/2/3 (zones a/b/c)."""
    return endpoint.str.split(".").str[2].map({"0": "node-1", "1": "node-2", "2": "node-3"})


def test_prefer_close_keeps_every_zone_home_and_overloads_the_small_ones(
    shipped_run: ShippedRun,
) -> None:
    run = shipped_run("topology-hints")
    r = requests(run, service="default/web-close:http", since_s=1.0)
    ok = r.loc[r["endpoint"] != ""]
    assert (zone_of(ok["endpoint"]) == ok["src_node"]).all()
    shares = ok["endpoint"].astype(str).value_counts(normalize=True)
    # One endpoint each in zone-b and zone-c: a third of all requests each.
    small = shares[zone_of(pd.Series(shares.index)).isin(["node-2", "node-3"]).to_numpy()]
    assert len(small) == 2 and (abs(small - 1 / 3) < 0.02).all()


def test_auto_hints_appear_and_vanish_with_the_allocation(shipped_run: ShippedRun) -> None:
    run = shipped_run("topology-hints")
    on, off = event_times(run, "topology-hints", "default/web-auto")[1:3]
    synced_on = float(first_sync(run, "node-1", on)["end_s"])
    synced_off = float(first_sync(run, "node-1", off)["end_s"])
    svc = "default/web-auto:http"
    before = requests(run, service=svc, node="node-1", since_s=1.0, until_s=on)
    during = requests(run, service=svc, node="node-1", since_s=synced_on + 2.0, until_s=off)
    after = requests(run, service=svc, node="node-1", since_s=synced_off + 2.0)
    # Without hints node-1 reaches every zone; with them only its own.
    assert set(zone_of(before["endpoint"])) == {"node-1", "node-2", "node-3"}
    assert set(zone_of(during["endpoint"])) == {"node-1"}
    assert set(zone_of(after["endpoint"])) == {"node-1", "node-2", "node-3"}
