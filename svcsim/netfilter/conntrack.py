"""The kernel's connection-tracking table (nf_conntrack) of one network namespace.

An entry is created by the first packet of a flow and holds the NAT decision for the
flow's life: later packets are matched against the entry in either direction and never
see the nat table again. Entries live until their timeout runs out without traffic.
The entry value and the per-protocol state machines are in
:mod:`svcsim.netfilter.conntrack_states`; this module holds entries, sizes the table and
evicts from it.

Time is a float ``now_s`` passed in by the caller; nothing here reads a clock.
Kernel sources (torvalds/linux) modelled here:

* ``net/netfilter/nf_conntrack_core.c``: lookup by either direction (both tuples are
  hashed), ``__nf_conntrack_alloc`` ("nf_conntrack: table full, dropping packet"),
  ``early_drop``/``early_drop_list``, ``gc_worker`` (95 % early drop),
  ``nf_conntrack_init_start`` (default max), ``nf_conntrack_in`` (IPS_SEEN_REPLY set only
  *after* the protocol handler ran).
* ``net/netfilter/nf_conntrack_proto_tcp.c``: ``tcp_can_early_drop``.

Not modelled: helpers and zones.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from svcsim.netfilter.conntrack_states import (
    UDP_EVENTS,
    ConntrackEntry,
    ConntrackTimeouts,
    Direction,
    FlowTuple,
    TcpState,
    UdpState,
    UpdateResult,
    Verdict,
    opens_flow,
    tcp_transition,
    udp_transition,
)

NF_CT_EVICTION_RANGE = 8  # buckets early_drop() looks at, nf_conntrack_core.c
_GIB = 1 << 30
_PAGE = 4096


def kernel_default_buckets(ram_bytes: int, is_64bit: bool = True, *, legacy: bool = False) -> int:
    """Return the auto-sized conntrack hash size (nf_conntrack_buckets).

    ``nf_conntrack_init_start``: RAM/16384/sizeof(hlist_head); newer kernels use 262144 for
    64-bit hosts over 4 GiB, 65536 over 1 GiB, at least 1024. ``legacy`` (before the
    factor-1 change): 65536 over 4 GiB, 16384 over 1 GiB, at least 32.
    """
    pages = ram_bytes // _PAGE
    buckets = pages * _PAGE // 16384 // (8 if is_64bit else 4)
    if legacy:
        if pages > 4 * _GIB // _PAGE:
            return 65536
        return 16384 if pages > _GIB // _PAGE else max(buckets, 32)
    if is_64bit and pages > 4 * _GIB // _PAGE:
        return 262144
    return 65536 if pages > _GIB // _PAGE else max(buckets, 1024)


def kernel_default_max(ram_bytes: int, is_64bit: bool = True, *, legacy: bool = False) -> int:
    """Return the default nf_conntrack_max: buckets x max_factor (1 newer, 4 legacy)."""
    return kernel_default_buckets(ram_bytes, is_64bit, legacy=legacy) * (4 if legacy else 1)


def kube_proxy_conntrack_max(num_cpu: int, max_per_core: int = 32768, min_: int = 131072) -> int:
    """Return the nf_conntrack_max kube-proxy sets; 0 means it leaves the sysctl alone.

    ``getConntrackMax`` (cmd/kube-proxy/app/conntrack.go): max(maxPerCore x CPUs, min)
    when maxPerCore > 0.
    """
    if max_per_core <= 0:
        return 0
    return max(max_per_core * num_cpu, min_)


def kube_proxy_hashsize(conntrack_max: int, current_buckets: int) -> int:
    """Return the hash size after kube-proxy's SetMax: raised to max/4 if smaller."""
    return current_buckets if current_buckets >= conntrack_max // 4 else conntrack_max // 4


# tcp_can_early_drop (nf_conntrack_proto_tcp.c): closing states may go even if ASSURED.
_TCP_EARLY_DROPPABLE = frozenset(
    {TcpState.FIN_WAIT, TcpState.LAST_ACK, TcpState.TIME_WAIT, TcpState.CLOSE, TcpState.CLOSE_WAIT}
)


@dataclass(frozen=True, slots=True)
class ConntrackStats:
    """Counters in the spirit of /proc/net/stat/nf_conntrack."""

    insert: int
    drop: int
    early_drop: int
    gc_early_drop: int
    invalid: int
    expired: int
    deleted: int


class ConntrackTable:
    """One network namespace's conntrack table.

    Capacity (``__nf_conntrack_alloc``): a new entry that would take the table past
    ``max_entries`` first runs ``early_drop``: it looks at NF_CT_EVICTION_RANGE (8) hash
    buckets starting at the new tuple's bucket and deletes *every* non-ASSURED entry of the
    first bucket that has one; if none is found the packet is dropped and ``create``
    returns None. ``max_entries == 0`` means no limit, as in the kernel. Buckets come from
    a seeded hash of each direction's tuple, as jhash does (the kernel's seed is random).
    Expired entries are treated as already reaped by the gc worker.
    """

    def __init__(
        self,
        max_entries: int,
        timeouts: ConntrackTimeouts | None = None,
        *,
        htable_size: int | None = None,
        hash_seed: int = 0,
    ) -> None:
        if max_entries < 0:
            raise ValueError(f"negative max_entries {max_entries!r}")
        if htable_size is not None and htable_size < 1:
            raise ValueError(f"htable_size must be >= 1, got {htable_size!r}")
        self.max_entries = max_entries
        self.timeouts = timeouts if timeouts is not None else ConntrackTimeouts()
        # Kernel auto-sizing gives max == buckets (max_factor 1).
        self.htable_size = htable_size or (max_entries if max_entries > 0 else 1024)
        self.early_drop_pending = False  # gc_work.early_drop: set when a packet was dropped
        self._key = hash_seed.to_bytes(8, "little")
        self._entries: dict[FlowTuple, ConntrackEntry] = {}
        self._by_reply: dict[FlowTuple, FlowTuple] = {}
        self._buckets: dict[int, set[FlowTuple]] = {}
        self._entry_buckets: dict[FlowTuple, tuple[int, int]] = {}
        self._heap: list[tuple[float, int, FlowTuple]] = []
        self._seq = 0
        self._counts = dict.fromkeys(ConntrackStats.__slots__, 0)

    def bucket_of(self, tup: FlowTuple) -> int:
        """Return the hash bucket of one direction's tuple (reciprocal_scale of the hash)."""
        text = f"{tup.proto}|{tup.src_ip}|{tup.src_port}|{tup.dst_ip}|{tup.dst_port}"
        digest = hashlib.blake2b(text.encode(), digest_size=4, key=self._key).digest()
        return (int.from_bytes(digest, "little") * self.htable_size) >> 32

    @property
    def stats(self) -> ConntrackStats:
        """Return a snapshot of the counters."""
        return ConntrackStats(**self._counts)

    def __len__(self) -> int:
        """Return the number of entries held (expired ones go at the next reap)."""
        return len(self._entries)

    def __iter__(self) -> Iterator[ConntrackEntry]:
        """Iterate over a snapshot of the entries held, oldest first."""
        return iter(list(self._entries.values()))

    def count(self, now_s: float) -> int:
        """Return the number of entries live at ``now_s``."""
        return sum(1 for e in self._entries.values() if now_s < e.expires_s)

    def lookup(self, packet: FlowTuple, now_s: float) -> ConntrackEntry | None:
        """Find the live entry ``packet`` belongs to, by its original or reply tuple."""
        original = packet if packet in self._entries else self._by_reply.get(packet)
        return None if original is None else self._live(original, now_s)

    def create(
        self,
        original: FlowTuple,
        reply: FlowTuple | None,
        now_s: float,
        mark: int = 0,
        *,
        event: str | None = None,
    ) -> ConntrackEntry | None:
        """Create the entry for a flow's first packet; None if the table is full.

        ``reply`` defaults to ``original.inverted()`` (no NAT). ``event`` is the first
        packet: tcp ``syn`` (default) or ``ack``/``data`` (loose pick-up), udp
        ``original``. Raises ValueError for a packet that cannot open a flow (the kernel
        marks it INVALID) or for a tuple clashing with a live entry.
        """
        if original.proto == "sctp":
            raise NotImplementedError("sctp conntrack is not modelled")
        reply = original.inverted() if reply is None else reply
        if reply.proto != original.proto:
            raise ValueError(f"protocol mismatch {original!r} / {reply!r}")
        event = event or ("syn" if original.proto == "tcp" else "original")
        if not opens_flow(original.proto, event):
            raise ValueError(f"a {original.proto} {event!r} packet does not open a flow")
        self.expire(now_s)
        for tup in (original, reply):
            if tup in self._entries or tup in self._by_reply:
                raise ValueError(f"tuple already tracked: {tup!r}")
        full = bool(self.max_entries) and len(self._entries) >= self.max_entries
        if full and not self._early_drop(original):
            self._counts["drop"] += 1
            self.early_drop_pending = True
            return None
        if original.proto == "tcp":
            fresh = ConntrackEntry(original, reply, TcpState.NONE, now_s, now_s, mark=mark)
            entry = tcp_transition(fresh, "original", event, now_s, self.timeouts).entry
            assert entry is not None
        else:
            fresh = ConntrackEntry(original, reply, UdpState.UNREPLIED, now_s, now_s, mark=mark)
            entry = udp_transition(fresh, "original", now_s, self.timeouts)
        self._insert(entry)
        self._counts["insert"] += 1
        return entry

    def update(
        self,
        target: ConntrackEntry | FlowTuple,
        event: str,
        now_s: float,
        *,
        direction: Direction | None = None,
    ) -> UpdateResult:
        """Apply one packet of a known flow; see ``tcp_transition``/``udp_transition``.

        ``target`` is the packet's tuple (its direction is found from the entry) or an
        entry (the table's current version of it is used; give ``direction`` for TCP).
        UDP events are the direction itself: ``original`` or ``reply``.
        """
        if isinstance(target, FlowTuple):
            entry = self.lookup(target, now_s)
            found = entry.direction_of(target) if entry is not None else None
            if direction is not None and found is not None and direction != found:
                raise ValueError(f"{target!r} travels {found}, not {direction}")
            direction = found
        else:
            entry = self._live(target.original, now_s)
        if entry is None:
            return UpdateResult(Verdict.NOT_FOUND, None)
        if isinstance(entry.state, UdpState):
            if event not in UDP_EVENTS or (direction is not None and direction != event):
                raise ValueError(f"udp event must be the packet's direction, got {event!r}")
            updated = udp_transition(
                entry, "reply" if event == "reply" else "original", now_s, self.timeouts
            )
            self._store(updated)
            return UpdateResult(Verdict.ACCEPT, updated)
        if direction is None:
            raise ValueError("direction is required to update a tcp entry")
        result = tcp_transition(entry, direction, event, now_s, self.timeouts)
        if result.verdict is Verdict.INVALID:
            self._counts["invalid"] += 1
        if result.entry is None:
            self._remove(entry.original)
        elif result.entry is not entry:
            self._store(result.entry)
        return result

    def expire(self, now_s: float) -> int:
        """Remove every entry whose timeout has run out by ``now_s``; return how many."""
        removed = 0
        while self._heap and self._heap[0][0] <= now_s:
            _, _, original = heapq.heappop(self._heap)
            entry = self._entries.get(original)
            # Heap items go stale when an entry is refreshed or deleted; check the entry.
            if entry is not None and now_s >= entry.expires_s:
                self._remove(original)
                removed += 1
        self._counts["expired"] += removed
        return removed

    def delete(self, predicate: Callable[[ConntrackEntry], bool]) -> int:
        """Delete every entry held for which ``predicate`` is true; return how many."""
        doomed = [e.original for e in self._entries.values() if predicate(e)]
        for original in doomed:
            self._remove(original)
        self._counts["deleted"] += len(doomed)
        return len(doomed)

    def delete_matching(
        self,
        *,
        proto: str | None = None,
        orig_dst: str | None = None,
        dst_nat: str | None = None,
        orig_port_dst: int | None = None,
    ) -> int:
        """Delete like ``conntrack -D -p PROTO --orig-dst IP --dst-nat IP --orig-port-dst N``.

        ``dst_nat`` matches DNATed entries whose NAT destination (reply source) is that IP.
        Filters left None match everything, so no filter deletes every entry.
        """

        def matches(e: ConntrackEntry) -> bool:
            o = e.original
            return (
                (proto is None or o.proto == proto)
                and (orig_dst is None or o.dst_ip == orig_dst)
                and (orig_port_dst is None or o.dst_port == orig_port_dst)
                and (dst_nat is None or (e.is_dnat and e.reply.src_ip == dst_nat))
            )

        return self.delete(matches)

    def gc_early_drop(self, now_s: float) -> int:
        """Run the gc worker's early drop once; return how many entries it killed.

        After a packet was dropped for a full table, the next ``gc_worker`` run kills
        entries that ``gc_worker_can_early_drop`` allows (not ASSURED, or TCP in a closing
        state per ``tcp_can_early_drop``) while the count is at least 95 % of the maximum.
        The kernel scans a slice of buckets per run; this scans all entries, oldest first.
        """
        self.expire(now_s)
        killed = 0
        if self.early_drop_pending and self.max_entries:
            threshold = self.max_entries // 100 * 95
            for entry in list(self._entries.values()):
                if len(self._entries) < threshold:
                    break
                if not entry.assured or entry.state in _TCP_EARLY_DROPPABLE:
                    self._remove(entry.original)
                    killed += 1
        self.early_drop_pending = False
        self._counts["gc_early_drop"] += killed
        return killed

    def _live(self, original: FlowTuple, now_s: float) -> ConntrackEntry | None:
        entry = self._entries.get(original)
        if entry is not None and now_s >= entry.expires_s:
            self._remove(original)
            self._counts["expired"] += 1
            return None
        return entry

    def _early_drop(self, new_original: FlowTuple) -> bool:
        start = self.bucket_of(new_original)
        for i in range(NF_CT_EVICTION_RANGE):
            bucket = self._buckets.get((start + i) % self.htable_size, set())
            victims = [o for o in bucket if not self._entries[o].assured]
            if victims:
                for original in victims:
                    self._remove(original)
                self._counts["early_drop"] += len(victims)
                return True
        return False

    def _insert(self, entry: ConntrackEntry) -> None:
        buckets = (self.bucket_of(entry.original), self.bucket_of(entry.reply))
        self._entry_buckets[entry.original] = buckets
        for b in buckets:
            self._buckets.setdefault(b, set()).add(entry.original)
        self._by_reply[entry.reply] = entry.original
        self._store(entry)

    def _store(self, entry: ConntrackEntry) -> None:
        self._entries[entry.original] = entry
        self._seq += 1
        heapq.heappush(self._heap, (entry.expires_s, self._seq, entry.original))
        if len(self._heap) > 4 * len(self._entries) + 1024:
            self._heap = []
            for original, live in self._entries.items():
                self._seq += 1
                self._heap.append((live.expires_s, self._seq, original))
            heapq.heapify(self._heap)

    def _remove(self, original: FlowTuple) -> None:
        entry = self._entries.pop(original)
        del self._by_reply[entry.reply]
        for b in set(self._entry_buckets.pop(original)):
            members = self._buckets[b]
            members.discard(original)
            if not members:
                del self._buckets[b]
