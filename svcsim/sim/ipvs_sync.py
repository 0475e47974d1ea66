"""What one IPVS-mode kube-proxy sync does to the node, and the graceful-termination check.

kube-proxy's IPVS proxier (kubernetes ``pkg/proxy/ipvs/proxier.go``; the order below is the
same in the stored v1.11-era copy @00430b4b and in the current, ``proxier.logger``-era
``syncProxyRules`` the search tool holds) has no partial sync: every ``syncProxyRules``

1. walks every Service port: ``syncService`` adds or updates its virtual servers (binding the
   ClusterIP, external and load-balancer addresses to ``kube-ipvs0``), ``syncEndpoint`` adds
   the wanted real servers and hands the others to the graceful-termination manager
   (:class:`~svcsim.proxy.ipvs_graceful.GracefulTermination`: weight 0 while the server has
   connections, deleted at once otherwise or for UDP);
2. ``syncIPSetEntries`` adds and deletes ip-set entries;
3. restores its helper iptables rules with one ``iptables-restore``; **if that fails it
   returns here**: the servers and sets changed above stay changed, but
4. the unbinding of addresses no longer used, ``cleanLegacyService`` (deleting virtual
   servers no Service wants), the healthz update and the UDP conntrack clean-up only run
   after a successful restore.

The simulation applies a sync's kernel changes at its end, in one step
(:func:`install_sync`); :func:`sync_counts` gives the cost model
(:class:`~svcsim.sim.ipvs_cost.IpvsSyncCostModel`) its objects and changes;
:func:`check_draining` is the manager's periodic ``tryDeleteRs``
(every :data:`~svcsim.proxy.ipvs_graceful.RS_CHECK_DELETE_INTERVAL_S`).
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from itertools import compress

from svcsim.netfilter.ipvs import IpvsState, VirtualServer
from svcsim.proxy.ipvs_graceful import GracefulTermination
from svcsim.sim.kernel import Kernel


@dataclass(frozen=True, slots=True)
class IpvsSyncCounts:
    """What a sync walks and what it changes in the kernel (the cost model's inputs)."""

    objects: int
    """Virtual servers + real servers + ip-set entries of the wanted state."""
    changes: int
    """Virtual servers added or updated or deleted, real servers added, re-weighted or
    deleted, ip-set entries added or deleted: one netlink call or ``ipset`` exec each."""


def sync_counts(installed: IpvsState, wanted: IpvsState) -> IpvsSyncCounts:
    """The walk's size and the kernel changes from ``installed`` to ``wanted``.

    A real server of ``installed`` that ``wanted`` lacks counts as one change whether the
    graceful-termination manager deletes it or sets its weight to 0.
    """
    entries = sum(len(s.members) for s in wanted.ipsets.sets)
    objects = len(wanted.virtual_servers) + entries
    objects += wanted.real_server_count
    pairs = _same_keys_pairs(installed, wanted)
    if pairs is not None:
        changes = sum(_server_changes(old, new) for old, new in pairs)
    else:
        before, after = installed.by_key, wanted.by_key
        # A virtual server deleted goes with its real servers in one call; one added is one
        # call, plus one per real server.
        changes = len(before.keys() - after.keys())
        changes += sum(1 + len(after[k].real_servers) for k in after.keys() - before.keys())
        changes += sum(_server_changes(before[k], after[k]) for k in before.keys() & after.keys())
    names = {s.name for s in (*installed.ipsets.sets, *wanted.ipsets.sets)}
    for name in names:
        old_set, new_set = installed.ipsets.get(name), wanted.ipsets.get(name)
        if old_set is new_set:
            continue
        old_members = set(old_set.members) if old_set is not None else set()
        changes += len(old_members ^ (set(new_set.members) if new_set is not None else set()))
    return IpvsSyncCounts(objects, changes)


def _same_keys_pairs(
    installed: IpvsState, wanted: IpvsState
) -> list[tuple[VirtualServer, VirtualServer]] | None:
    """The (installed, wanted) servers that differ, when both hold the same keys in order.

    None unless the two tuples are as long, hold unique keys (as long as their indexes) and
    every pair that differs has the same key: then no server is added or deleted, and the
    pairs are the ones the by-key comparison would look at (a quick walk by position).
    """
    olds, news = installed.virtual_servers, wanted.virtual_servers
    if len(olds) != len(news) or len(installed.by_key) != len(olds):
        return None
    if len(wanted.by_key) != len(news):
        return None
    # The pairs that differ, found by identity in C (10,000 servers in a big cluster).
    pairs = list(
        zip(
            compress(olds, map(operator.is_not, olds, news)),
            compress(news, map(operator.is_not, olds, news)),
            strict=True,
        )
    )
    return pairs if all(old.key == new.key for old, new in pairs) else None


def _server_changes(old: VirtualServer, new: VirtualServer) -> int:
    """Kernel calls from ``old`` to ``new`` (the same key): update, real servers changed."""
    if old is new:
        return 0  # the very spec installed: no change
    changes = 0
    if dataclasses.replace(old, real_servers=()) != dataclasses.replace(new, real_servers=()):
        changes += 1  # scheduler or persistence: UpdateVirtualServer
    old_w = {(r.address, r.port): r.weight for r in old.real_servers}
    new_w = {(r.address, r.port): r.weight for r in new.real_servers}
    changes += len(old_w.keys() ^ new_w.keys())
    changes += sum(1 for k in old_w.keys() & new_w.keys() if old_w[k] != new_w[k])
    return changes


def install_sync(
    kernel: Kernel,
    graceful: GracefulTermination,
    wanted: IpvsState,
    now_s: float,
    *,
    restored: bool,
) -> IpvsState:
    """Apply one sync's kernel changes at ``now_s``; the IPVS state the node holds after it.

    ``wanted`` is the compiled state without draining servers (``show_draining=False``). The
    manager keeps removed TCP real servers with live connections at weight 0 (the connection
    table is first brought to ``now_s``). With ``restored`` False (the ``iptables-restore``
    failed) the helper rules stay the old ones, and so do virtual servers no Service wants and
    addresses no longer used (steps 3-4 of the module docstring).
    """
    table = kernel.ipvs_table
    installed = kernel.ipvs
    if table is None or installed is None:
        raise ValueError(f"node {kernel.node}: not an IPVS-mode kernel")
    table.expire(now_s)
    servers = list(wanted.virtual_servers)
    if not restored:
        wanted_keys = {vs.key for vs in servers}
        servers += [vs for vs in installed.virtual_servers if vs.key not in wanted_keys]
    placed = graceful.sync(table, servers)
    if restored:
        same = len(placed) == len(servers) and all(map(operator.is_, placed, servers))
        # Nothing drains: the wanted state itself (its index of servers is built already).
        state = wanted if same else dataclasses.replace(wanted, virtual_servers=tuple(placed))
    else:
        bound = tuple(dict.fromkeys((*installed.dummy_addresses, *wanted.dummy_addresses)))
        state = IpvsState(bound, tuple(placed), wanted.ipsets, installed.ruleset)
    kernel.install_ipvs(state, now_s)
    return state


def check_draining(kernel: Kernel, graceful: GracefulTermination, now_s: float) -> int:
    """``tryDeleteRs`` at ``now_s``: delete draining real servers without connections.

    Returns how many were deleted; the node's recorded IPVS state loses them too.
    """
    table = kernel.ipvs_table
    state = kernel.ipvs
    if table is None or state is None:
        return 0
    table.expire(now_s)
    deleted = graceful.sweep(table)
    if deleted:
        current = {key: svc.spec for key, svc in table.services.items()}
        servers = tuple(current.get(vs.key, vs) for vs in state.virtual_servers)
        kernel.install_ipvs(dataclasses.replace(state, virtual_servers=servers), now_s)
    return len(deleted)
