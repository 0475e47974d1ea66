"""The assembly's by-products (restore sections, per-fragment lines) equal what the text says."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcsim.k8s.objects import EndpointSlice, Service, ServicePort
from svcsim.proxy.caches import CompileCaches
from svcsim.proxy.endpoints import build_service_port_map
from svcsim.proxy.iptables import compile_iptables_sync
from svcsim.proxy.iptables_assembled import assemble
from svcsim.proxy.iptables_assembly import fixed_head_tail, kernel_state
from svcsim.proxy.iptables_rules import Part, comment, jump, rule
from svcsim.proxy.iptables_service import RestoreBuffers, ServicePortBlock, ServicePortOutcome
from tests.proxy.test_iptables_kernel import service_and_slice
from tests.proxy.test_iptables_support import ep, fake_context, make_service, make_slice, port

NatLine = tuple[str, str, bool]


def split_text(text: str) -> tuple[tuple[str, ...], tuple[NatLine, ...]]:
    """The lines outside the nat table, and the nat table's (line, chain, is_decl) lines."""
    lines = text.splitlines()
    at = lines.index("*nat")
    nat: list[NatLine] = []
    for line in lines[at + 1 :]:
        if line.startswith(":"):
            nat.append((line, line[1:].split(" ", 1)[0], True))
        elif line.startswith("-A "):
            nat.append((line, line[3:].split(" ", 1)[0], False))
    return tuple(lines[:at]), tuple(nat)


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=4, unique=True).flatmap(
        lambda ids: st.tuples(*(service_and_slice(i) for i in ids))
    ),
    st.sampled_from(["test-node", "other"]),
)
def test_sections_are_the_split_of_the_restore_text(
    pairs: tuple[tuple[Service, EndpointSlice], ...], node: str
) -> None:
    sync = compile_iptables_sync(
        [s for s, _ in pairs], [sl for _, sl in pairs], fake_context(node_name=node)
    )
    assert sync.restore_sections is not None
    assert sync.restore_sections == split_text(sync.restore_text)
    assert sync.restore_sections[0][0] == "*filter"
    assert len(sync.restore_sections[1]) == sync.stats.nat_chains + sync.stats.nat_rules


def _block(*parts: Part) -> ServicePortBlock:
    return ServicePortBlock(
        (), (), ("KUBE-SVC-X",), (("KUBE-SVC-X", rule(*parts)),), ServicePortOutcome(False, False)
    )


@pytest.mark.parametrize(
    ("text", "known"),
    [("plain", True), ("line\nbreak", False), ("carriage\rreturn", False)],
)
def test_sections_are_left_unknown_when_a_line_would_split(text: str, known: bool) -> None:
    head, tail = fixed_head_tail(fake_context())
    block = _block(comment(text), jump("RETURN"))
    built = assemble((head, block, tail))
    ruleset, text, buf, sections = (
        built.ruleset,
        built.restore_text(),
        built.buffers(),
        built.sections(),
    )
    assert (sections is not None) == known
    # The text and kernel state are what the buffers say, either way.
    fresh = RestoreBuffers()
    for part in (head, block, tail):
        part.replay(fresh)
    assert text == fresh.restore_text()
    assert ruleset == kernel_state(fresh)
    assert buf == fresh


def test_unchanged_service_ports_reuse_their_block_and_assembly() -> None:
    svc = make_service("ns", "svc", cluster_ip="172.30.0.1", ports=(ServicePort(80, name="p"),))
    other = make_service("ns", "two", cluster_ip="172.30.0.2", ports=(ServicePort(80, name="p"),))
    sl = make_slice("ns", "svc", (ep("10.0.0.1", "a"),), (port(8080, "p"),))
    sl2 = make_slice("ns", "two", (ep("10.0.0.2", "b"),), (port(8080, "p"),))
    ctx = fake_context(node_name="a")
    caches = CompileCaches()  # one run's
    first = compile_iptables_sync([svc, other], [sl, sl2], ctx, caches)
    again = compile_iptables_sync([svc, other], [sl, sl2], ctx, caches)
    assert again.ruleset is first.ruleset and again.restore_sections is first.restore_sections
    moved = make_slice("ns", "two", (ep("10.0.0.3", "b"),), (port(8080, "p"),))
    changed = compile_iptables_sync([svc, other], [sl, moved], ctx, caches)
    assert "10.0.0.3:8080" in changed.restore_text and "10.0.0.2:8080" not in changed.restore_text
    assert changed.restore_sections == split_text(changed.restore_text)


def test_chains_a_change_leaves_equal_are_the_very_same_objects() -> None:
    # The traffic engine tells changed chains by identity: an endpoint move must leave
    # KUBE-SERVICES (same lines) and the other Service's chains the same objects.
    svc = make_service("ns", "svc", cluster_ip="172.30.0.1", ports=(ServicePort(80, name="p"),))
    other = make_service("ns", "two", cluster_ip="172.30.0.2", ports=(ServicePort(80, name="p"),))
    sl = make_slice("ns", "svc", (ep("10.0.0.1", "a"), ep("10.0.0.5", "b")), (port(8080, "p"),))
    sl2 = make_slice("ns", "two", (ep("10.0.0.2", "b"),), (port(8080, "p"),))
    ctx = fake_context(node_name="a")
    caches = CompileCaches()  # one run's
    first = compile_iptables_sync([svc, other], [sl, sl2], ctx, caches).ruleset
    moved = make_slice("ns", "svc", (ep("10.0.0.1", "a"), ep("10.0.0.6", "b")), (port(8080, "p"),))
    second = compile_iptables_sync([svc, other], [moved, sl2], ctx, caches).ruleset
    nat1, nat2 = first.table("nat"), second.table("nat")
    assert nat1 is not None and nat2 is not None
    same = {c.name for c in nat1.chains if nat2.chain(c.name) is c}
    changed = {c.name for c in nat2.chains} - same
    assert "KUBE-SERVICES" in same
    spn = next(iter(build_service_port_map([svc])))
    assert changed == {spn.cluster_chain, spn.endpoint_chain("10.0.0.6:8080")}
