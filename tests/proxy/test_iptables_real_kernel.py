"""Under every switch, real iptables takes kube-proxy's rules and prints back what svcsim prints.

Each case compiles upstream's TestOverallIPTablesRules inputs with one switch set as a user
would set it for their node, loads ``svcsim rules --format save`` text into a fresh network
namespace with the real iptables-restore, and compares the real iptables-save with svcsim's
(time stamps aside). It skips, saying why, where root, iptables-nft or ``ip`` are missing.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from svcsim.netfilter.text import render_save
from svcsim.proxy.iptables import compile_iptables
from svcsim.proxy.iptables_service import INVALID_DROPPED_COUNTER, LOCALHOST_NODEPORT_COUNTER
from tests.netfilter.kernel_iptables import kernel_save, kernel_unavailable, without_stamps
from tests.proxy.switch_cases import SWITCHES
from tests.proxy.test_iptables_support import fake_context
from tests.proxy.test_iptables_upstream import overall_inputs

UNAVAILABLE = kernel_unavailable()


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"real iptables: {UNAVAILABLE}")
@pytest.mark.parametrize("switches", list(SWITCHES.values()), ids=list(SWITCHES))
def test_real_iptables_save_equals_svcsims(switches: dict[str, Any]) -> None:
    ctx = fake_context(**switches)
    counters: tuple[str, ...] = ()
    if ctx.nfacct:
        if shutil.which("nfacct") is None:
            pytest.skip("nfacct counters need the nfacct tool (apt-get install nfacct)")
        counters = (LOCALHOST_NODEPORT_COUNTER, INVALID_DROPPED_COUNTER)
    services, slices = overall_inputs()
    mine = render_save(compile_iptables(services, slices, ctx))
    assert without_stamps(kernel_save(mine, counters)) == without_stamps(mine)
