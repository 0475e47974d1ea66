"""The nftables compiler's text against the real kernel and nft binary.

Each case's ``dump`` is loaded with ``nft -f`` into a fresh network namespace (the kernel must
accept it) and ``nft list table ip kube-proxy`` must equal svcsim's ``list`` rendering. Skipped,
with the reason, where root, ``nft`` or network namespaces are missing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from svcsim.netfilter.nftables import dump
from svcsim.netfilter.nftables_list import list_table
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
