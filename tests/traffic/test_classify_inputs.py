"""Classifications kept across world changes: equal inputs classify alike, changes show."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from svcsim.netfilter.packet import Outcome as NfOutcome
from svcsim.netfilter.packet import VerdictKind
from svcsim.sim.network import BackendState
from svcsim.traffic.classify import classify, classify_inputs
from tests.traffic.test_classify import DIAL, _accept, _Ctx, _ctx

_WORLDS: list[tuple[BackendState | None, dict[str, Any]]] = [
    (state, kw)
    for state in (None, *BackendState)
    for kw in (
        {},
        {"in_api": False},
        {"port": 9090},
        {"owner": "default/other"},
        {"proxy": "blocked"},
        {"outside": {"10.244.1.2": "ext"}},
    )
]


def _inputs(ctx: _Ctx, ip: str) -> tuple[object, ...]:
    ctx.service_time_of = lambda app: f"time-of-{app}"  # type: ignore[attr-defined]
    return classify_inputs(_accept((ip, 8080)), DIAL, ctx)  # type: ignore[arg-type]


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(range(len(_WORLDS)), 2)))
def test_equal_inputs_classify_alike(a: int, b: int) -> None:
    (sa, kwa), (sb, kwb) = _WORLDS[a], _WORLDS[b]
    ctx_a, ip_a = _ctx(sa, **kwa)
    ctx_b, ip_b = _ctx(sb, **kwb)
    outcome_a, outcome_b = _accept((ip_a, 8080)), _accept((ip_b, 8080))
    same_state = ctx_a.proxy == ctx_b.proxy
    res_a = classify(outcome_a, DIAL, "n1", ctx_a)  # type: ignore[arg-type]
    res_b = classify(outcome_b, DIAL, "n1", ctx_b)  # type: ignore[arg-type]
    if outcome_a == outcome_b and same_state and _inputs(ctx_a, ip_a) == _inputs(ctx_b, ip_b):
        assert res_a == res_b
    if res_a != res_b and outcome_a == outcome_b and same_state:
        assert _inputs(ctx_a, ip_a) != _inputs(ctx_b, ip_b)


@pytest.mark.parametrize("verdict_only", [True, False])
def test_rule_decided_outcomes_read_nothing(verdict_only: bool) -> None:
    ctx, _ = _ctx(BackendState.SERVING)
    outcome = (
        NfOutcome(VerdictKind.REJECT, ("10.96.0.10", 80), None)
        if verdict_only
        else _accept(None, local=True)
    )
    assert classify_inputs(outcome, DIAL, ctx) == ()  # type: ignore[arg-type]
