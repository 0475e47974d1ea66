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
