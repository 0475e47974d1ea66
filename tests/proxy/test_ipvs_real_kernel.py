"""The real kernel takes svcsim's IPVS-mode and userspace-mode state and lists it back the same.

``ipset restore`` + ``ipset list``, ``iptables-nft-restore`` + ``iptables-nft-save`` and, where
the kernel has IPVS, ``ipvsadm -R`` + ``ipvsadm -Ln``, in a throw-away network namespace. Each
part skips, saying why, where root, a tool or the kernel module is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from svcsim.netfilter.ipset import render_ipset_list, render_ipset_restore
from svcsim.netfilter.ipvs import render_ipvsadm, render_ipvsadm_restore
from svcsim.netfilter.text import render_save
from svcsim.proxy.context import NodeContext
from svcsim.proxy.ipvs import compile_ipvs
from svcsim.proxy.userspace import compile_userspace
from tests.netfilter.kernel_iptables import kernel_save, kernel_unavailable, without_stamps
from tests.netfilter.kernel_ipvs import (
    ipset_unavailable,
    ipvs_unavailable,
    load_ipvs_node,
    normalised_ipset_list,
)
from tests.proxy.ipvs_cases import AFFINITY, NODE_IP, everything_service
from tests.proxy.test_iptables_support import TEST_NODE_NAME

CTX = NodeContext.with_cluster_cidr(TEST_NODE_NAME, "10.0.0.0/8", node_ips=(NODE_IP,))
IPSET = ipset_unavailable()
IPVS = ipvs_unavailable() if IPSET is None else IPSET


@pytest.mark.skipif(IPSET is not None, reason=f"real ipset/iptables: {IPSET}")
@pytest.mark.parametrize("scheduler", ["rr", "mh"])
def test_real_ipset_and_iptables_list_what_svcsim_prints(scheduler: str) -> None:
    state = compile_ipvs(*everything_service(**AFFINITY), CTX, scheduler)
    rules = render_save(state.ruleset)
    real = load_ipvs_node(render_ipset_restore(state.ipsets), rules, None)
    assert normalised_ipset_list(real["ipset"]) == normalised_ipset_list(
        render_ipset_list(state.ipsets)
    )
    assert without_stamps(real["iptables"]) == without_stamps(rules)


@pytest.mark.skipif(IPVS is not None, reason=f"real IPVS: {IPVS}")
def test_real_ipvsadm_lists_what_svcsim_prints() -> None:
    state = compile_ipvs(*everything_service(**AFFINITY), CTX, "mh")
    real = load_ipvs_node(
        render_ipset_restore(state.ipsets),
        render_save(state.ruleset),
        render_ipvsadm_restore(state.virtual_servers),
    )
    assert real["ipvsadm"] == render_ipvsadm(state.virtual_servers, {})


@pytest.mark.skipif(kernel_unavailable() is not None, reason=f"{kernel_unavailable()}")
def test_real_iptables_takes_the_userspace_portal_rules() -> None:
    state = compile_userspace(*everything_service(), CTX, np.random.default_rng(0))
    rules = render_save(state.ruleset)
    assert without_stamps(kernel_save(rules)) == without_stamps(rules)
