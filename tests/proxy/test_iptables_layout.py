"""Where each fragment's chains sit in an assembled table (proxy/iptables_layout.py)."""

from __future__ import annotations

import pytest

from svcsim.netfilter.model import Chain, Table
from svcsim.proxy.iptables_layout import layout_of

FIXED = ("PREROUTING", "KUBE-PROXY-CANARY")


def _table(*names: str) -> Table:
    return Table("nat", tuple(Chain(name) for name in (*FIXED, *names)))


# (table's chains after the fixed ones, declared per fragment, written per fragment,
#  the fragments' own chains by owner, or None when the shape is not plain)
CASES = [
    ("plain", ("A", "B", "C"), [["A"], ["B", "C"]], [["A"], ["B", "C"]], {"A": 0, "B": 1, "C": 1}),
    ("declared-unwritten", ("A", "B"), [["A", "B"], []], [["A"], []], {"A": 0, "B": 0}),
    ("written-by-another", ("A", "B"), [["A"], ["B"]], [["A"], ["A", "B"]], {"B": 1}),
    (
        "written-by-two-others",
        ("A", "B", "C"),
        [["A"], ["B"], ["C"]],
        [[], ["A"], ["A"]],
        {"B": 1, "C": 2},
    ),
    ("declared-twice", ("A", "A"), [["A"], ["A"]], [[], []], None),
    ("declared-fixed", ("PREROUTING",), [["PREROUTING"]], [[]], None),
    ("written-undeclared", ("A",), [["A"]], [["A", "X"]], None),
    ("other-order", ("B", "A"), [["A"], ["B"]], [["A"], ["B"]], None),
]


@pytest.mark.parametrize(
    ("chains", "declared", "written", "own"),
    [case[1:] for case in CASES],
    ids=[c[0] for c in CASES],
)
def test_layout_of_plain_tables_and_refusals(
    chains: tuple[str, ...],
    declared: list[list[str]],
    written: list[list[str]],
    own: dict[str, int] | None,
) -> None:
    layout = layout_of(_table(*chains), declared, written, FIXED)
    if own is None:
        assert layout is None
        return
    assert layout is not None
    assert dict(layout.own) == own
    assert layout.counts == tuple(map(len, declared))
    assert layout.first == len(FIXED)
    assert [layout.owner(name) for name in chains] == [own.get(name) for name in chains]
