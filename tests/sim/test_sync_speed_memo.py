"""The sync path's shortcuts (sections from the compiler, chain and UDP memos) change nothing."""

from __future__ import annotations

from functools import partial

import pytest

from svcsim.k8s.objects import Protocol
from svcsim.proxy.iptables import IptablesSync
from svcsim.sim import restore
from svcsim.sim.caches import RunCaches
from svcsim.sim.changes import ChangeTracker
from svcsim.sim.restore import chain_names, plan_sync, service_chains
from tests.sim.restore_cases import (
    SERVICES,
    SLICES,
    compile_,
    eps,
    nat_chains,
    same_plan,
    svc,
    text_plan,
)

NatLine = tuple[str, str, bool]


def reference_split(text: str) -> tuple[tuple[str, ...], tuple[NatLine, ...]]:
    """``_split`` as first written: every line looked at, the table tracked line by line."""
    other: list[str] = []
    nat: list[NatLine] = []
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        if table != "nat" or line.startswith("*") or line == "COMMIT":
            if table != "nat":
                other.append(line)
            continue
        if line.startswith(":"):
            nat.append((line, line[1:].split(" ", 1)[0], True))
        elif line.startswith("-A "):
            nat.append((line, line[3:].split(" ", 1)[0], False))
    return tuple(other), tuple(nat)


def _compiled_states() -> list[IptablesSync]:
    return [
        compile_(SERVICES, SLICES)[0],
        compile_(SERVICES, [eps("a", ["10.244.1.1"]), SLICES[1]])[0],
        compile_([svc("a", "10.96.0.1")], [])[0],
        compile_([], [])[0],
    ]


@pytest.mark.parametrize("index", range(4))
def test_compiler_sections_are_the_split_of_its_text(index: int) -> None:
    compiled = _compiled_states()[index]
    assert compiled.restore_sections is not None
    assert compiled.restore_sections == reference_split(compiled.restore_text)


@pytest.mark.parametrize(
    "text",
    [
        "*filter\n:A - [0:0]\n-A A -j ACCEPT\nCOMMIT\n*nat\n:B - [0:0]\n-A B -j RETURN\nCOMMIT\n",
        "*nat\n:B - [0:0]\n-A B -j RETURN\nCOMMIT\n*filter\n:A - [0:0]\nCOMMIT\n",
        "*filter\nCOMMIT\n*nat\n-A B -j RETURN\nCOMMIT\n*mangle\n:M - [0:0]\nCOMMIT\n",
        "*filter\n:A - [0:0]\nCOMMIT\n",
        "*filter\r:A - [0:0]\rCOMMIT\r*nat\r:B - [0:0]\rCOMMIT\r",
        "*filter\nCOMMIT\n*nat\n:B - [0:0]\r*raw\nCOMMIT\n",
        "-A X -j Y\n*nat\n:B - [0:0]\n# comment\n-X B\nCOMMIT\n",
    ],
)
def test_split_shortcut_equals_line_by_line_split(text: str) -> None:
    caches = RunCaches()
    assert restore._split(text, caches) == reference_split(text)
    assert restore._split(text, caches) == reference_split(text)  # memoised answer too


@pytest.mark.parametrize("delete_stale", [True, False])
def test_plans_from_the_assembly_equal_plans_from_the_text(delete_stale: bool) -> None:
    before = compile_(SERVICES, SLICES)[0]
    after, chains_of = compile_(SERVICES, [eps("a", ["10.244.1.1"]), SLICES[1]])
    stale = ["KUBE-SEP-STALESTALESTALE", "KUBE-OTHER"]
    for changed in (chains_of([]), chains_of(["default/a"]), chains_of(["default/a", "x/y"])):
        for full in (True, False):
            for existing in (nat_chains(before.ruleset), [*nat_chains(after.ruleset), *stale]):
                kwargs = {
                    "full": full,
                    "existing_nat_chains": existing,
                    "delete_stale": delete_stale,
                }
                shaped = plan_sync(after, changed, caches=RunCaches(), **kwargs)  # type: ignore[arg-type]
                same_plan(shaped, text_plan(after, changed, **kwargs))  # type: ignore[arg-type]
                assert shaped.rules_written > 0


def reference_service_chains(compiled_inputs: tuple[object, ...], services: list[str]) -> set[str]:
    ports, endpoints = compiled_inputs
    out: set[str] = set()
    for spn in ports:  # type: ignore[attr-defined]
        if f"{spn.namespace}/{spn.name}" in services:
            out |= {spn.cluster_chain, spn.local_chain, spn.external_chain, spn.firewall_chain}
            out |= {spn.endpoint_chain(e.text) for e in endpoints.get(spn, ())}  # type: ignore[attr-defined]
    return out


@pytest.mark.parametrize(
    "services", [[], ["default/a"], ["default/b"], ["default/a", "default/b"], ["other/a"]]
)
def test_service_chains_memo_equals_the_definition(services: list[str]) -> None:
    _, chains_of = compile_(SERVICES, SLICES)
    assert isinstance(chains_of, partial)
    ports, endpoints = chains_of.args
    expected = reference_service_chains((ports, endpoints), services)
    caches = RunCaches()
    assert service_chains(ports, endpoints, services, caches) == expected
    assert service_chains(ports, endpoints, services, caches) == expected  # memoised
    assert chains_of(services) == expected
    assert service_chains(ports, endpoints, iter(services)) == expected
    if services == ["default/a"]:
        assert len(expected) == 4 + 2  # four port chains, two endpoints


@pytest.mark.parametrize(("protocol", "cleanup"), [(Protocol.UDP, True), (Protocol.TCP, False)])
def test_nodes_taking_the_same_slices_agree_on_udp_cleanup(
    protocol: Protocol, cleanup: bool
) -> None:
    sl = eps("a", ["10.244.1.1"], protocol)
    answers = []
    for node in ("n1", "n2", "n3"):
        tracker = ChangeTracker(node)
        tracker.slice_update(sl, removed=False)
        answers.append(tracker.take().conntrack_cleanup_required)
    assert answers == [cleanup] * 3


def test_chain_names_list_the_table_in_order() -> None:
    compiled = compile_(SERVICES, SLICES)[0]
    nat = compiled.ruleset.table("nat")
    assert nat is not None
    caches = RunCaches()
    names = chain_names(nat, caches)
    assert list(names) == [c.name for c in nat.chains] and "KUBE-SERVICES" in names
    assert chain_names(nat, caches) is names
    assert chain_names(nat) == names
    assert chain_names(None) == ()
