"""kube-proxy's IPVS graceful termination: drain a removed real server at weight 0, then delete.

From kubernetes ``pkg/proxy/ipvs/graceful_termination.go`` and ``syncEndpoint`` in
``proxier.go`` (the v1.33+ line, see :mod:`svcsim.proxy.ipvs_rules`):

* a real server that a sync no longer wants is first tried for deletion (``deleteRsFunc``): it
  is deleted at once if its protocol is UDP or SCTP (``IsRsGracefulTerminationNeeded`` is false:
  ``expire_nodest_conn=1`` cleans its entries on their next packet) or it has no connections
  (``ActiveConn + InactiveConn == 0``); otherwise its weight is set to 0 and it joins the list;
* the list is re-checked every ``rsCheckDeleteInterval`` (1 minute) and each server deleted once
  it has no connections;
* an endpoint that comes back while on the list is taken off it and re-added at weight 1.

:class:`GracefulTermination` keeps that list for one node and turns each sync's wanted virtual
servers (:func:`svcsim.proxy.ipvs.compile_ipvs` with ``show_draining=False``) into what is
installed in the node's :class:`~svcsim.netfilter.ipvs_kernel.IpvsKernel`. The caller (the
simulation) calls :meth:`GracefulTermination.sweep` every :data:`RS_CHECK_DELETE_INTERVAL_S`.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Final

from svcsim.netfilter.ipvs import RealServer, VirtualServer
from svcsim.netfilter.ipvs_kernel import IpvsKernel

RS_CHECK_DELETE_INTERVAL_S: Final = 60.0
"""``rsCheckDeleteInterval``: how often the list of draining real servers is re-checked."""

GRACEFUL_PROTOCOLS: Final = frozenset({"TCP"})
"""Protocols whose real servers drain (``IsRsGracefulTerminationNeeded``: not UDP, not SCTP)."""

_Key = tuple[tuple[str, str, int], tuple[str, int]]
"""(virtual server key, real server address and port)."""


@dataclass(slots=True)
class GracefulTermination:
    """One node's list of real servers draining at weight 0."""

    draining: dict[_Key, RealServer] = field(default_factory=dict)

    def sync(self, kernel: IpvsKernel, wanted: Sequence[VirtualServer]) -> list[VirtualServer]:
        """Install ``wanted`` in ``kernel``, keeping removed TCP servers with connections at 0.

        Returns the virtual servers as installed (wanted, plus the draining real servers).
        """
        last = kernel.installed
        if not self.draining and last is not None and len(last) == len(wanted):
            # Nothing drains and the kernel holds exactly the last specs: only the ones that
            # differ can drain (IpvsKernel.install then takes the same quick way, or the full).
            out = list(wanted)
            # Which differ, found by identity in C (a Python walk is ~1 ms at 10,000).
            for i in compress(range(len(out)), map(operator.is_not, last, wanted)):
                out[i] = self._placed(kernel, out[i])
            kernel.install(out)
            self.draining = {k: v for k, v in self.draining.items() if k[0] in kernel.services}
            return out
        out = []
        for vs in wanted:
            installed = kernel.services.get(vs.key)
            if installed is not None and installed.spec is vs and not self.draining:
                # The kernel holds exactly this spec's real servers (IpvsKernel.install keeps
                # them so): nothing to drain, nothing came back.
                out.append(vs)
                continue
            out.append(self._placed(kernel, vs))
        kernel.install(out)
        self.draining = {k: v for k, v in self.draining.items() if k[0] in kernel.services}
        return out

    def _placed(self, kernel: IpvsKernel, vs: VirtualServer) -> VirtualServer:
        """``vs`` as installed: plus its removed TCP real servers that still have connections."""
        keep = list(vs.real_servers)
        wanted_keys = {(rs.address, rs.port) for rs in vs.real_servers}
        for key in list(self.draining):
            if key[0] == vs.key and key[1] in wanted_keys:
                del self.draining[key]  # it came back: off the list, weight 1 again
        for dest in kernel.real_servers(vs.key):
            rkey = (dest.address, dest.port)
            if rkey in wanted_keys:
                continue
            busy = dest.active + dest.inactive > 0
            if vs.protocol in GRACEFUL_PROTOCOLS and busy:
                draining = RealServer(dest.address, dest.port, 0)
                self.draining[(vs.key, rkey)] = draining
                keep.append(draining)
            else:
                self.draining.pop((vs.key, rkey), None)
        # The spec itself when nothing drains (an unchanged spec stays the same object).
        same = len(keep) == len(vs.real_servers)
        return vs if same else dataclasses.replace(vs, real_servers=tuple(keep))

    def sweep(self, kernel: IpvsKernel) -> list[tuple[str, int]]:
        """``tryDeleteRs``: delete the draining servers without connections; the ones deleted."""
        deleted = []
        for (vs_key, rkey), _ in list(self.draining.items()):
            dest = next(
                (d for d in kernel.real_servers(vs_key) if (d.address, d.port) == rkey), None
            )
            if dest is not None and dest.active + dest.inactive > 0:
                continue
            del self.draining[(vs_key, rkey)]
            svc = kernel.services.get(vs_key)
            if svc is not None:
                spec = svc.spec
                kept = tuple(rs for rs in spec.real_servers if (rs.address, rs.port) != rkey)
                others = [s.spec for k, s in kernel.services.items() if k != vs_key]
                kernel.install([*others, dataclasses.replace(spec, real_servers=kept)])
            deleted.append(rkey)
        return deleted
