"""The rule model's fast constructors make the very values the dataclasses make."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable

import pytest

from svcsim.netfilter.extensions import new_comment, new_dnat, new_jump
from svcsim.netfilter.model import (
    AddressMatch,
    Chain,
    CommentMatch,
    DnatTarget,
    InterfaceMatch,
    JumpTarget,
    PortMatch,
    ProtocolMatch,
    Rule,
    new_address,
    new_chain,
    new_rule,
)
from svcsim.netfilter.text import parse_rule

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


@pytest.mark.parametrize(
    ("made", "want"),
    [
        (lambda: new_jump("KUBE-SEP-X"), lambda: JumpTarget("KUBE-SEP-X")),
        (lambda: new_dnat("10.0.0.1", 8080), lambda: DnatTarget("10.0.0.1", 8080)),
        (lambda: new_dnat("10.0.0.1", None), lambda: DnatTarget("10.0.0.1")),
        (
            lambda: new_address(ipaddress.ip_network("10.0.0.1/32")),
            lambda: AddressMatch(ipaddress.ip_network("10.0.0.1/32")),
        ),
        (
            lambda: new_address(ipaddress.ip_network("10.0.0.0/8"), negated=True),
            lambda: AddressMatch(ipaddress.ip_network("10.0.0.0/8"), negated=True),
        ),
        (lambda: new_chain("C", (parse_rule("-j X"),)), lambda: Chain("C", (parse_rule("-j X"),))),
        (lambda: new_chain("INPUT", (), "DROP"), lambda: Chain("INPUT", (), "DROP")),
        (
            lambda: new_comment("ns/svc:p -> 10.0.0.1:80"),
            lambda: CommentMatch("ns/svc:p -> 10.0.0.1:80"),
        ),
    ],
    ids=[
        "jump",
        "dnat",
        "dnat-no-port",
        "address",
        "negated-address",
        "chain",
        "policy",
        "comment",
    ],
)
def test_fast_constructors_make_the_dataclass_value(
    made: Callable[[], object], want: Callable[[], object]
) -> None:
    got, expected = made(), want()
    assert got == expected and hash(got) == hash(expected) and repr(got) == repr(expected)
    assert type(got) is type(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(got, dataclasses.fields(got)[0].name, "changed")  # type: ignore[arg-type]
