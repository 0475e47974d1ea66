"""Every failed attempt of every shipped scenario says why, in words docs/results.md defines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from svcsim.results.schema import Cause
from svcsim.traffic import ReferenceEngine, TrafficEngine
from tests.scenarios.causes import check_causes, documented_causes
from tests.scenarios.conftest import SCENARIOS_DIR
from tests.scenarios.engines import shipped_requests


def test_every_cause_is_documented() -> None:
    assert documented_causes() == {c.value for c in Cause if c is not Cause.NONE}


@pytest.mark.parametrize("path", sorted(SCENARIOS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_failures_have_documented_causes_in_both_engines(path: Path) -> None:
    batched = shipped_requests(path, TrafficEngine)
    reference = shipped_requests(path, ReferenceEngine)
    assert len(batched) > 100
    check_causes(batched)
    check_causes(reference)
    pd.testing.assert_frame_equal(batched, reference, check_exact=True)


def test_a_failed_sync_alone_turns_its_node_blocked_in_both_engines(tmp_path: Path) -> None:
    # stale-rules' second round on a one-node cluster: the partial sync that fails on the
    # injected chain installs nothing and no other node installs anything at that instant, so
    # only the failure itself can tell the batched engine that node-1 is now "blocked".
    text = (SCENARIOS_DIR / "stale-rules.yaml").read_text()
    head, _ = text.split("\ntimeline:\n")
    head = head.replace("  nodes: 3\n", "  nodes: 1\n").replace("duration: 150s", "duration: 9s")
    path = tmp_path / "one-node.yaml"
    path.write_text(
        head
        + "\ntimeline:\n"
        + "  - {at: 3s, action: inject-stale-rule, node: node-1, service: web:http,"
        + " endpoint: 10.244.0.250:8080}\n"
        + "  - {at: 5s, action: scale, deployment: api, replicas: 3}\n"
    )
    batched = shipped_requests(path, TrafficEngine)
    reference = shipped_requests(path, ReferenceEngine)
    pd.testing.assert_frame_equal(batched, reference, check_exact=True)
    causes = set(batched["cause"])
    assert {Cause.STALE_RULE.value, Cause.SYNC_BLOCKED.value} <= causes
