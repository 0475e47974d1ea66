"""A memo of the nftables compiler's per-service-port output, owned by whoever compiles.

A node's kube-proxy syncs again and again, and a sync changes few service ports; the others
arrive as the very same (frozen, shared) ServicePortInfo, endpoints tuple and node context.
:class:`NftablesMemo` keeps what :func:`svcsim.proxy.nftables.table_from_maps` wrote for each
such port, so a compile replays them and writes only the changed ones. The memo belongs to its
caller (DESIGN decision 8): a compile without one computes afresh, with the same result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from svcsim.netfilter.nftables import NftChain, NftElement, NftRule, NftSet
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import EndpointInfo, ServicePortInfo
from svcsim.proxy.memo import BoundedMemo
from svcsim.proxy.nftables import _Builder, _service_port


@dataclass(frozen=True, slots=True)
class _PortFragment:
    """What :func:`_service_port` adds to a fresh builder for one service port.

    Each of the builder's four containers is written independently, so replaying a fragment
    (chains with ``setdefault``, sets and elements by assignment, rules appended) leaves the
    builder exactly as writing the port afresh would.
    """

    chains: tuple[NftChain, ...]
    sets: tuple[NftSet, ...]
    rules: tuple[NftRule, ...]
    elements: tuple[tuple[tuple[str, tuple[str, ...]], NftElement], ...]

    def replay(self, b: _Builder) -> None:
        """Add the fragment to ``b`` as writing the port afresh would."""
        for chain in self.chains:
            b.chains.setdefault(chain.name, chain)
        for one in self.sets:
            b.sets[one.name] = one
        b.rules.extend(self.rules)
        b.elements.update(self.elements)


@dataclass(frozen=True, slots=True)
class _MemoEntry:
    """A memo entry: the fragment and the objects whose identities key it (kept alive)."""

    svc: ServicePortInfo
    endpoints: tuple[EndpointInfo, ...]
    ctx: NodeContext
    fragment: _PortFragment


NFTABLES_MEMO_LIMIT: Final = 1 << 16
"""Service-port fragments an :class:`NftablesMemo` keeps (the oldest eighth goes when full)."""


class NftablesMemo:
    """Per-service-port fragments of earlier compiles, owned by whoever compiles repeatedly.

    A sync changes few service ports; the others arrive as the very same (frozen, shared)
    :class:`ServicePortInfo`, endpoints tuple and context, so their fragment is replayed
    instead of written again. Keyed by those objects' identities; each entry holds them, so
    their ids stay theirs while it lives. Results equal a compile without the memo.
    """

    __slots__ = ("_fragments",)

    def __init__(self, limit: int = NFTABLES_MEMO_LIMIT) -> None:
        self._fragments: BoundedMemo[tuple[int, int, int], _MemoEntry] = BoundedMemo(
            "nftables service-port fragments by (info id, endpoints id, context id)", limit
        )

    def fragment(
        self, svc: ServicePortInfo, endpoints: tuple[EndpointInfo, ...], ctx: NodeContext
    ) -> _PortFragment:
        """The port's fragment, from the memo or written now (and kept)."""
        key = (id(svc), id(endpoints), id(ctx))
        hit = self._fragments.get(key)
        if hit is None:
            hit = self._fragments.put(
                key, _MemoEntry(svc, endpoints, ctx, _fragment_of(svc, endpoints, ctx))
            )
        return hit.fragment

    def __len__(self) -> int:
        return len(self._fragments)


def _fragment_of(
    svc: ServicePortInfo, endpoints: tuple[EndpointInfo, ...], ctx: NodeContext
) -> _PortFragment:
    part = _Builder()
    _service_port(part, svc, endpoints, ctx)
    return _PortFragment(
        tuple(part.chains.values()),
        tuple(part.sets.values()),
        tuple(part.rules),
        tuple(part.elements.items()),
    )
