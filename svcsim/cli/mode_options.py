"""Options that belong to one kube-proxy mode: checked before anything is compiled.

``--ipvs-scheduler`` belongs to IPVS mode, ``--proxy-port-range`` to userspace mode; given to
another mode, or with a value svcsim does not model, each is a one-line error (exit 2).
"""

from __future__ import annotations

from typing import Final

from svcsim.cli.common import fail
from svcsim.proxy.flags import parse_port_range

SCHEDULER_NAMES: Final = ("rr", "wrr", "lc", "wlc", "sh", "dh", "mh")
"""Kept equal to :data:`svcsim.netfilter.ipvs_sched.SCHEDULERS` (a test checks); repeated here
so that checking an option does not import the kernel models."""


def check_mode_options(
    mode: str, scheduler: str | None, port_range: str | None
) -> tuple[str, tuple[int, int] | None]:
    """The scheduler (rr by default) and the proxy port range, or one-line errors and exit 2."""
    problems = []
    if scheduler is not None and mode != "ipvs":
        problems.append(f"--ipvs-scheduler: an IPVS-mode flag, not for --mode {mode}")
    if scheduler is not None and scheduler not in SCHEDULER_NAMES:
        problems.append(
            f"--ipvs-scheduler {scheduler!r}: not a scheduler svcsim models "
            f"({', '.join(SCHEDULER_NAMES)})"
        )
    if port_range is not None and mode != "userspace":
        problems.append(f"--proxy-port-range: a userspace-mode flag, not for --mode {mode}")
    parsed = None
    if port_range is not None:
        try:
            parsed = parse_port_range(port_range)
        except ValueError as exc:
            problems.append(f"--proxy-port-range {exc}")
    if problems:
        fail(problems)
    return scheduler or "rr", parsed


IGNORED_BY_MODE: Final = {
    "ipvs": {
        "localhost_nodeports": "--localhost-nodeports/--no-localhost-nodeports: IPVS mode has "
        "no localhost NodePorts (an iptables-mode setting)",
        "nfacct": "--nfacct/--no-nfacct: IPVS mode writes no nfacct counter matches",
    },
    "userspace": {
        "localhost_nodeports": "--localhost-nodeports/--no-localhost-nodeports: userspace mode "
        "redirects NodePorts on every local address (an iptables-mode setting)",
        "random_fully": "--random-fully/--no-random-fully: userspace mode writes no MASQUERADE "
        "rule (kube-proxy itself connects to the endpoints)",
        "nfacct": "--nfacct/--no-nfacct: userspace mode writes no nfacct counter matches",
    },
}
"""Switches each of these modes ignores, and the warning printed when one is given."""
