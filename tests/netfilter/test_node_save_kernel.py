"""The node dumps load into the real kernel, and what it saves back reads to the same model."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from svcsim.netfilter.node_save import parse_node_save
from tests.netfilter.kernel_iptables import kernel_unavailable
from tests.netfilter.netns import namespace
from tests.netfilter.node_dumps import DUMPS, chains_of, set_names, without_counters

UNAVAILABLE = kernel_unavailable()


def _kernel_save_of(text: str) -> str:
    """iptables-save of a fresh namespace after loading ``text`` (its ipsets created empty)."""
    with namespace("dump") as name:
        run = ["ip", "netns", "exec", name]
        for ipset in set_names(text):
            subprocess.run([*run, "ipset", "create", ipset, "hash:net"], check=True)
        subprocess.run([*run, "iptables-nft-restore"], input=text, text=True, check=True)
        return subprocess.run(
            [*run, "iptables-nft-save"], text=True, check=True, capture_output=True
        ).stdout


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"real iptables: {UNAVAILABLE}")
@pytest.mark.parametrize("name", sorted(DUMPS))
def test_the_kernel_saves_back_the_same_model(name: str) -> None:
    text = without_counters(DUMPS[name].read_text())
    if set_names(text) and shutil.which("ipset") is None:
        pytest.skip("the dump's -m set rules need ipset to create the sets (apt-get install ipset)")
    mine = parse_node_save(text).ruleset
    kernels = parse_node_save(_kernel_save_of(text)).ruleset
    assert chains_of(kernels) == chains_of(mine)
