"""The rule model's fast constructor makes the very value the dataclass makes."""

from __future__ import annotations

import ipaddress

import pytest

from svcsim.netfilter.model import (
    AddressMatch,
    CommentMatch,
    InterfaceMatch,
    JumpTarget,
    PortMatch,
    ProtocolMatch,
    Rule,
    new_rule,
)

FIELDS = [
    ("-j X", None, None, None, None, None, (), JumpTarget("X")),
    ("", None, None, None, None, None, (), None),
    (
        "-s 10.0.0.1 -d 10.0.0.0/8 -i eth0 -o eth1 -p tcp -m tcp -m comment --comment c -j X",
        AddressMatch(ipaddress.ip_network("10.0.0.1/32")),
        AddressMatch(ipaddress.ip_network("10.0.0.0/8"), negated=True),
        InterfaceMatch("eth0"),
        InterfaceMatch("eth1", negated=True),
        ProtocolMatch("tcp"),
        (PortMatch("tcp"), CommentMatch("c")),
        JumpTarget("X"),
    ),
]


@pytest.mark.parametrize("fields", FIELDS, ids=lambda fields: fields[0])
def test_new_rule_is_the_dataclass_value(fields: tuple[object, ...]) -> None:
    made, want = new_rule(*fields), Rule(*fields)  # type: ignore[arg-type]
    assert made == want and hash(made) == hash(want) and repr(made) == repr(want)
    assert type(made) is Rule
    with pytest.raises(AttributeError):
        made.text = "changed"  # type: ignore[misc]
