"""The nftables compiler's text against the real kernel and nft binary.

Each case's ``dump`` is loaded with ``nft -f`` into a fresh network namespace (the kernel must
accept it) and ``nft list table ip kube-proxy`` must equal svcsim's ``list`` rendering. Skipped,
with the reason, where root, ``nft`` or network namespaces are missing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from svcsim.netfilter.nftables import NftChain, NftRule, NftTable, dump
from svcsim.netfilter.nftables_list import list_table, unreproduced_merges
from svcsim.proxy.nftables import compile_nftables
from tests.netfilter.kernel_nftables import load_and_list, nft_unavailable
from tests.proxy.nftables_cases import KERNEL_CASES, NftCase
from tests.proxy.nftables_support import FAKE_SERVICE_CIDRS, nft_fake_context
from tests.proxy.test_iptables_upstream import overall_inputs

OVERALL_LIST = Path(__file__).parent / "data" / "nft_list_overall.txt"
"""``nft list table ip kube-proxy`` of TestOverallNFTablesRules' table, as nftables 1.0.6
printed it on Debian 12 (captured from the real binary)."""


def test_list_rendering_matches_captured_nft_output() -> None:
    """Runs everywhere: the rendering against real nft output captured once."""
    services, slices = overall_inputs()
    table = compile_nftables(services, slices, nft_fake_context(), FAKE_SERVICE_CIDRS)
    assert list_table(table) == OVERALL_LIST.read_text()


@pytest.mark.parametrize("case", KERNEL_CASES, ids=lambda c: c.name)
def test_kernel_accepts_dump_and_lists_it_as_svcsim_does(case: NftCase) -> None:
    reason = nft_unavailable()
    if reason is not None:
        pytest.skip(reason)
    table = case.compile()
    try:
        listed = load_and_list(dump(table))
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"nft refused the dump of {case.name}: {exc.stderr}")
    assert listed == list_table(table)


SET_RULES = (
    "ip saddr != { 0.0.0.0/0 , 1.2.3.4 } drop",
    "ip saddr != { 203.0.113.7/32 , 10.0.0.0/8 , 1.2.3.4 } drop",
    "ip saddr != { 203.0.113.7/32 } drop",
    "ip saddr != { 10.0.0.0/24 , 10.0.0.0/24 } drop",
    "ip saddr != { 10.0.0.5 , 10.0.0.6 } drop",
    "ip saddr != { 10.0.0.0/25 , 10.0.0.128/25 , 10.0.1.0/32 } drop",
)
"""Anonymous address sets: nested, unordered, single, duplicate, neighbouring (the last is the
one nft prints as a joined range, which is not reproduced)."""


@pytest.mark.parametrize("rule", SET_RULES)
def test_anonymous_address_sets_print_as_nft_prints_them(rule: str) -> None:
    table = NftTable(
        family="ip",
        name="kube-proxy",
        chains=(NftChain("c"),),
        rules=(NftRule("c", rule),),
    )
    joined = bool(unreproduced_merges(table))
    assert joined == (rule == SET_RULES[-1])
    reason = nft_unavailable()
    if reason is not None:
        pytest.skip(reason)
    listed = load_and_list(dump(table))
    assert (listed == list_table(table)) != joined
