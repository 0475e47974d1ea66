"""A connecting socket's SYN retransmit schedule (tcp_timer.c), linear first then doubling."""

from __future__ import annotations

import pytest

from svcsim.netfilter.tcp_syn import TcpSynSysctls


@pytest.mark.parametrize(
    ("retries", "linear", "sends", "give_up"),
    [
        # Linux 6.5+ defaults: 4 linear timeouts, then doubling; 6 + 4 retransmits.
        (6, 4, (1, 2, 3, 4, 5, 7, 11, 19, 35, 67), 131),
        # Before 6.5 (no linear timeouts): the schedule usually quoted.
        (6, 0, (1, 3, 7, 15, 31, 63), 127),
        (1, 0, (1,), 3),
        (2, 1, (1, 2, 4), 8),
        # The timer is capped at TCP_RTO_MAX (120 s).
        (9, 0, (1, 3, 7, 15, 31, 63, 127, 247, 367), 487),
    ],
)
def test_schedule(retries: int, linear: int, sends: tuple[int, ...], give_up: int) -> None:
    schedule = TcpSynSysctls(retries, linear).schedule()
    assert schedule.retransmits_s == tuple(float(s) for s in sends)
    assert schedule.give_up_s == give_up


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        TcpSynSysctls(0, 4)
