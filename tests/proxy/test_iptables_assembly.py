"""The assembly's line-break check agrees with ``str.splitlines`` on any text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcsim.proxy.iptables_assembly import _has_line_break

BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _splits(text: str) -> bool:
    """What the check must say: ``splitlines`` breaks the text somewhere."""
    return ("x" + text + "x").splitlines() != ["x" + text + "x"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-A KUBE-SEP-X -s 10.0.0.1 -j KUBE-MARK-MASQ",
        "a\tb",
        "é",
        *BREAKS,
        *(f"a{c}b" for c in BREAKS),
    ],
)
def test_line_break_found_exactly_where_splitlines_breaks(text: str) -> None:
    assert _has_line_break(text) == _splits(text)


@given(st.text(alphabet=st.sampled_from([*BREAKS, "a", " ", "é", "\t", '"'])))
def test_line_break_check_agrees_with_splitlines(text: str) -> None:
    assert _has_line_break(text) == _splits(text)
