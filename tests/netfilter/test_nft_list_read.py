"""Reading ``nft list`` output back into kube-proxy's table (svcsim.netfilter.nft_list_read)."""

from __future__ import annotations

import subprocess

import pytest

from svcsim.netfilter.nft_eval import walk_nft
from svcsim.netfilter.nft_list_read import (
    NftListError,
    kube_proxy_rule,
    priority_value,
    read_listing,
    seconds,
)
from svcsim.netfilter.nft_parse import parse_table
from svcsim.netfilter.nftables import dump
from svcsim.netfilter.nftables_list import canonical_rule, list_table
from svcsim.netfilter.numgen import first_draw
from svcsim.netfilter.packet import Packet
from svcsim.proxy.context import node_network
from svcsim.proxy.nftables import compile_nftables
from tests.netfilter.kernel_nftables import load_and_list, nft_unavailable
from tests.proxy.nftables_cases import KERNEL_CASES, NftCase
from tests.proxy.nftables_support import FAKE_SERVICE_CIDRS, nft_fake_context
from tests.proxy.test_iptables_upstream import overall_inputs
from tests.proxy.test_nftables_real_kernel import OVERALL_LIST


@pytest.mark.parametrize(
    ("text", "value"),
    [("dstnat", -100), ("dstnat - 10", -110), ("srcnat + 5", 105), ("filter", 0), ("-90", -90)],
)
def test_priorities(text: str, value: int) -> None:
    assert priority_value(text) == value


@pytest.mark.parametrize(("text", "value"), [("3h", 10800), ("1m30s", 90), ("1d2h", 93600)])
def test_durations(text: str, value: int) -> None:
    assert seconds(text) == value


@pytest.mark.parametrize(
    "rule",
    [
        "mark set mark or 0x4000",
        "mark set mark xor 0x4000",
        "mark and 0x4000 == 0x0 return",
        "ip daddr . meta l4proto . th dport vmap @service-ips",
    ],
)
def test_canonical_rules_read_back(rule: str) -> None:
    assert kube_proxy_rule(canonical_rule(rule)) == rule


def test_captured_real_nft_output_reads_back_to_the_compiled_table() -> None:
    services, slices = overall_inputs()
    compiled = compile_nftables(services, slices, nft_fake_context(), FAKE_SERVICE_CIDRS)
    listing = read_listing(OVERALL_LIST.read_text())
    assert listing.others == ()
    read = listing.kube_proxy
    assert read is not None
    assert list_table(read) == list_table(compiled)
    assert {c.name: c for c in read.chains} == {c.name: c for c in compiled.chains}
    assert sorted(read.elements, key=repr) == sorted(compiled.elements, key=repr)
    # The table read back is evaluated as the compiled one: every numgen choice, same outcome.
    ctx = nft_fake_context()
    network = node_network(ctx, "10.0.0.0/8")
    a, b = parse_table(compiled), parse_table(read)
    for service in services:
        if service.cluster_ip in ("", "None"):
            continue
        for port in service.ports:
            packet = Packet("10.0.1.7", service.cluster_ip, port.protocol.value.lower(), port.port)
            for k in range(3):
                draw = first_draw(k, 3)
                got = walk_nft(b, packet, network, draw=lambda d=draw: d)[0]
                want = walk_nft(a, packet, network, draw=lambda d=draw: d)[0]
                assert got == want


def test_other_tables_are_listed_and_skipped() -> None:
    text = (
        "table inet filter {\n\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"
    )
    listing = read_listing(text + OVERALL_LIST.read_text())
    assert listing.others == ("inet filter",)
    assert listing.kube_proxy is not None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("hello\n", 1, "expected 'table FAMILY NAME {'"),
        ("table ip kube-proxy {\n\tchain x {\n", 3, "chain x never closed"),
        ("table ip kube-proxy {\n\twhat\n}\n", 2, "expected a chain, set or map block"),
    ],
)
def test_bad_listings(text: str, line: int, message: str) -> None:
    with pytest.raises(NftListError, match=message) as err:
        read_listing(text)
    assert err.value.line == line


@pytest.mark.parametrize("case", KERNEL_CASES, ids=lambda c: c.name)
def test_the_kernels_listing_reads_back(case: NftCase) -> None:
    reason = nft_unavailable()
    if reason is not None:
        pytest.skip(reason)
    table = case.compile()
    try:
        listed = load_and_list(dump(table))
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"nft refused the dump of {case.name}: {exc.stderr}")
    read = read_listing(listed).kube_proxy
    assert read is not None and list_table(read) == listed
