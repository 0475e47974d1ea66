"""The shortcut for the usual EndpointSlice endpoint reads what the checked path reads."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.k8s.fields import Reader, YList, YMap
from svcsim.k8s.objects import Endpoint, EndpointConditions
from svcsim.k8s.parse import _SLICE_ENDPOINT_KEYS, _plain_endpoint, _slice_endpoint, plain_endpoint


def tree(value: Any) -> Any:
    """``value`` as the YAML readers give it (YMap/YList, every line 1)."""
    if isinstance(value, dict):
        out = YMap(1)
        for key, item in value.items():
            out[key] = tree(item)
            out.key_lines[key] = 1
        return out
    if isinstance(value, list):
        seq = YList(1)
        for item in value:
            seq.append(tree(item))
            seq.item_lines.append(1)
        return seq
    return value


def checked(em: YMap) -> tuple[Any, list[str]]:
    """The checked path's endpoint and every problem and warning it records."""
    r = Reader("m.yaml", "EndpointSlice/default/s")
    r.known(em, "endpoints[0]", _SLICE_ENDPOINT_KEYS)
    endpoint = _slice_endpoint(r, em, "endpoints[0]", "IPv4", "default")
    return endpoint, [str(p) for p in (*r.problems, *r.warnings)]


USUAL = {"addresses": ["10.0.0.1"], "nodeName": "node-1", "conditions": {"ready": True}}


@pytest.mark.parametrize(
    "value",
    [
        USUAL,
        {"addresses": ["10.0.0.1"]},
        {**USUAL, "zone": "a", "hostname": "h", "conditions": None},
        {**USUAL, "conditions": {"ready": False, "serving": True, "terminating": None}},
        {**USUAL, "nodeName": ""},
    ],
)
def test_the_usual_shapes_take_the_shortcut(value: dict[str, Any]) -> None:
    em = tree(value)
    plain = plain_endpoint(em)
    assert plain is not None
    assert checked(em) == (plain, [])


@pytest.mark.parametrize(
    "fields",
    [
        ("10.0.0.1", EndpointConditions(True), "node-1", "zone-a"),
        ("10.0.0.2", EndpointConditions(), None, None),
    ],
)
def test_plain_endpoint_is_made_as_the_dataclass_makes_it(fields: tuple[Any, ...]) -> None:
    ip, conditions, node_name, zone = fields
    made = _plain_endpoint(ip, conditions, node_name, zone)
    want = Endpoint((ip,), conditions, node_name, zone)
    assert made == want and hash(made) == hash(want) and repr(made) == repr(want)
    assert type(made) is Endpoint


@pytest.mark.parametrize("value", [1, 0, 1.0, 0.0, "true"])
def test_conditions_equal_to_a_bool_but_not_one_leave_the_shortcut(value: Any) -> None:
    assert plain_endpoint(tree({**USUAL, "conditions": {"ready": value}})) is None


_VALUES = st.sampled_from([None, "", "n1", 5, True, [], {}])
_ADDRESSES = st.sampled_from(
    [["10.0.0.1"], ["10.0.0.1", "10.0.0.2"], [], ["127.0.0.1"], ["0.0.0.0"], ["010.0.0.1"],
     ["fe80::1"], ["x"], [5], None, "10.0.0.1", ["224.0.0.1"], ["169.254.1.1"]]
)  # fmt: skip
_CONDITIONS = st.one_of(
    st.none(),
    st.sampled_from([[], "ready"]),
    st.dictionaries(
        st.sampled_from(["ready", "serving", "terminating", "other"]),
        st.sampled_from([None, True, False, "true", 1]),
        max_size=3,
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    addresses=_ADDRESSES,
    conditions=_CONDITIONS,
    others=st.dictionaries(
        st.sampled_from(["nodeName", "zone", "hostname", "targetRef", "hints", "topology", "x"]),
        _VALUES,
        max_size=3,
    ),
    drop=st.sampled_from(["", "addresses", "conditions"]),
)
def test_the_shortcut_is_the_checked_reading_or_declines(
    addresses: Any, conditions: Any, others: dict[str, Any], drop: str
) -> None:
    value = {"addresses": addresses, "conditions": conditions, **others}
    value.pop(drop, None)
    em = tree(value)
    plain = plain_endpoint(em)
    if plain is not None:
        assert checked(em) == (plain, [])
