"""The kernel's connection-tracking table (nf_conntrack), as values and one table.

An entry is created by the first packet of a flow and holds the NAT decision for the
flow's life: later packets are matched against the entry in either direction and never
see the nat table again. Entries live until their timeout runs out without traffic.

Time is a float ``now_s`` passed in by the caller; nothing here reads a clock.
Kernel sources (torvalds/linux) modelled here:

* ``net/netfilter/nf_conntrack_core.c``: lookup by either direction (both tuples are
  hashed), ``nf_ct_is_expired`` (dead once ``now >= timeout``), ``__nf_conntrack_alloc``
  ("nf_conntrack: table full, dropping packet"), ``early_drop``/``early_drop_list``,
  ``gc_worker`` (95 % early drop), ``nf_conntrack_init_start`` (default max),
  ``nf_conntrack_in`` (IPS_SEEN_REPLY set only *after* the protocol handler ran).
* ``net/netfilter/nf_conntrack_proto_tcp.c``: ``tcp_conntracks[][][]``, ``tcp_timeouts[]``,
  ``nf_conntrack_tcp_packet``, ``tcp_new``, ``tcp_can_early_drop``.
* ``net/netfilter/nf_conntrack_proto_udp.c``: ``udp_timeouts[]``, ``nf_conntrack_udp_packet``.

Not modelled: TCP sequence/window tracking (every segment is taken as in-window and
acknowledged, so RETRANS/UNACK timeouts and RFC 5961 challenge ACKs never apply), helpers,
zones, and SCTP's state machine (SCTP tuples exist; SCTP entries cannot be created).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

Direction = Literal["original", "reply"]
PROTOCOLS = frozenset({"tcp", "udp", "sctp"})
TCP_EVENTS = frozenset({"syn", "syn_ack", "ack", "fin", "rst", "data"})
UDP_EVENTS = frozenset({"original", "reply"})
NF_CT_EVICTION_RANGE = 8  # buckets early_drop() looks at, nf_conntrack_core.c
_GIB = 1 << 30
_PAGE = 4096


@dataclass(frozen=True, slots=True)
class FlowTuple:
    """One direction of a flow as conntrack keys it: protocol, source and destination."""

    proto: str
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int

    def __post_init__(self) -> None:
        if self.proto not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.proto!r}")
        for port in (self.src_port, self.dst_port):
            if not 0 <= port <= 65535:
                raise ValueError(f"port out of range {port!r}")

    def inverted(self) -> FlowTuple:
        """Return the tuple of the opposite direction without NAT (nf_ct_invert_tuple)."""
        return FlowTuple(self.proto, self.dst_ip, self.dst_port, self.src_ip, self.src_port)


class TcpState(StrEnum):
    """TCP conntrack states, named as ``tcp_conntrack_names[]`` prints them."""

    NONE = "NONE"
    SYN_SENT = "SYN_SENT"
    SYN_RECV = "SYN_RECV"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT = "FIN_WAIT"
    CLOSE_WAIT = "CLOSE_WAIT"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"
    CLOSE = "CLOSE"
    SYN_SENT2 = "SYN_SENT2"


class UdpState(StrEnum):
    """UDP entry state; the kernel keeps only flags, ``conntrack -L`` shows them."""

    UNREPLIED = "UNREPLIED"
    REPLIED = "REPLIED"  # reply seen, no packet since: still the 30 s timeout
    ASSURED = "ASSURED"  # a packet after the reply: stream timeout (2 s rule aside)


class Verdict(StrEnum):
    """What conntrack did with one packet of a known flow."""

    ACCEPT = "accept"  # state and timeout updated
    IGNORED = "ignored"  # tcp sIG: packet passes, state and timeout unchanged
    INVALID = "invalid"  # tcp sIV: ctstate INVALID, entry unchanged
    DESTROYED = "destroyed"  # RST before any reply: entry deleted at once
    REOPEN = "reopen"  # SYN on a closed flow: entry deleted, create a new one (NF_REPEAT)
    NOT_FOUND = "not_found"  # no live entry for this packet


@dataclass(frozen=True, slots=True)
class ConntrackEntry:
    """One conntrack entry (``struct nf_conn``) as an immutable value.

    ``reply`` is the tuple replies arrive with: its source is the DNAT destination
    (Pod ip:port) and its destination the client, or the masquerade address if SNATed.
    The ``tcp_*`` fields are the kernel's ``ip_ct_tcp`` bookkeeping (last packet seen,
    a FIN seen, simultaneous open) that later transitions depend on.
    """

    original: FlowTuple
    reply: FlowTuple
    state: TcpState | UdpState
    expires_s: float
    created_s: float
    seen_reply: bool = False
    assured: bool = False
    mark: int = 0
    tcp_last: tuple[Direction, str] | None = None
    tcp_close_init: bool = False
    tcp_simultaneous_open: bool = False

    @property
    def dnat_destination(self) -> tuple[str, int]:
        """Return the (ip, port) the flow was DNATed to, or its own destination if not."""
        return (self.reply.src_ip, self.reply.src_port)

    @property
    def is_dnat(self) -> bool:
        """Whether the destination was rewritten (IPS_DST_NAT)."""
        o, r = self.original, self.reply
        return (r.src_ip, r.src_port) != (o.dst_ip, o.dst_port)

    @property
    def is_snat(self) -> bool:
        """Whether the source was rewritten, e.g. by MASQUERADE (IPS_SRC_NAT)."""
        o, r = self.original, self.reply
        return (r.dst_ip, r.dst_port) != (o.src_ip, o.src_port)

    def is_live(self, now_s: float) -> bool:
        """Whether the entry has not timed out at ``now_s`` (nf_ct_is_expired is ``<=``)."""
        return now_s < self.expires_s

    def direction_of(self, packet: FlowTuple) -> Direction | None:
        """Return which direction ``packet`` travels in this flow, or None if neither."""
        if packet == self.original:
            return "original"
        return "reply" if packet == self.reply else None


@dataclass(frozen=True, slots=True)
class ConntrackTimeouts:
    """Timeouts in seconds; defaults are the kernel's (tcp_timeouts[], udp_timeouts[]).

    ``udp_stream_min_age_s``: newer kernels give a replied UDP flow the stream timeout only
    if the packet comes more than this long after the entry was created (``stream_ts``);
    None means the older rule (stream timeout for every packet after the reply).
    """

    tcp_syn_sent_s: float = 120.0
    tcp_syn_recv_s: float = 60.0
    tcp_established_s: float = 432000.0
    tcp_fin_wait_s: float = 120.0
    tcp_close_wait_s: float = 60.0
    tcp_last_ack_s: float = 30.0
    tcp_time_wait_s: float = 120.0
    tcp_close_s: float = 10.0
    tcp_syn_sent2_s: float = 120.0
    tcp_unack_s: float = 300.0
    udp_s: float = 30.0
    udp_stream_s: float = 120.0
    udp_stream_min_age_s: float | None = 2.0

    def tcp_timeout_s(self, state: TcpState) -> float:
        """Return the timeout for a TCP state."""
        return {
            TcpState.SYN_SENT: self.tcp_syn_sent_s,
            TcpState.SYN_RECV: self.tcp_syn_recv_s,
            TcpState.ESTABLISHED: self.tcp_established_s,
            TcpState.FIN_WAIT: self.tcp_fin_wait_s,
            TcpState.CLOSE_WAIT: self.tcp_close_wait_s,
            TcpState.LAST_ACK: self.tcp_last_ack_s,
            TcpState.TIME_WAIT: self.tcp_time_wait_s,
            TcpState.CLOSE: self.tcp_close_s,
            TcpState.SYN_SENT2: self.tcp_syn_sent2_s,
        }[state]

    @classmethod
    def older_kernel(cls) -> ConntrackTimeouts:
        """Return defaults of kernels before the UDP 2 s rule: stream timeout 180 s."""
        return cls(udp_stream_s=180.0, udp_stream_min_age_s=None)

    @classmethod
    def kube_proxy_defaults(
        cls,
        *,
        tcp_established_s: float = 86400.0,
        tcp_close_wait_s: float = 3600.0,
        udp_s: float = 0.0,
        udp_stream_s: float = 0.0,
        base: ConntrackTimeouts | None = None,
    ) -> ConntrackTimeouts:
        """Return ``base`` (kernel defaults) with kube-proxy's conntrack sysctls applied.

        kube-proxy writes each sysctl only if its setting is > 0 (``setSysctls`` in
        cmd/kube-proxy/app/conntrack.go); defaults from v1alpha1/defaults.go are
        tcpEstablishedTimeout 24h, tcpCloseWaitTimeout 1h, udp timeouts 0 (left alone).
        """
        t = base if base is not None else cls()
        changes = {
            "tcp_established_s": tcp_established_s,
            "tcp_close_wait_s": tcp_close_wait_s,
            "udp_s": udp_s,
            "udp_stream_s": udp_stream_s,
        }
        return replace(t, **{k: v for k, v in changes.items() if v > 0})


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


def opens_flow(proto: str, event: str) -> bool:
    """Whether a first packet creates an entry (tcp_new: SYN, or ACK with tcp_loose=1)."""
    if proto == "tcp":
        return event in ("syn", "ack", "data")
    return proto == "udp" and event == "original"


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What one packet did: the verdict and the entry afterwards (None if gone)."""

    verdict: Verdict
    entry: ConntrackEntry | None


_ABBREV: dict[str, TcpState | str] = {
    "NO": TcpState.NONE, "SS": TcpState.SYN_SENT, "SR": TcpState.SYN_RECV,
    "ES": TcpState.ESTABLISHED, "FW": TcpState.FIN_WAIT, "CW": TcpState.CLOSE_WAIT,
    "LA": TcpState.LAST_ACK, "TW": TcpState.TIME_WAIT, "CL": TcpState.CLOSE,
    "S2": TcpState.SYN_SENT2, "IV": "IV", "IG": "IG",
}  # fmt: skip


def _rows(text: str) -> tuple[TcpState | str, ...]:
    return tuple(_ABBREV[word] for word in text.split())


# tcp_conntracks[dir][index][old_state] (nf_conntrack_proto_tcp.c, v5/v6 text), columns in
# TcpState order NO SS SR ES FW CW LA TW CL S2; IV = invalid, IG = ignore.
_TCP_TABLE: dict[tuple[Direction, str], tuple[TcpState | str, ...]] = {
    ("original", "syn"): _rows("SS SS IG IG IG IG IG SS SS S2"),
    ("original", "syn_ack"): _rows("IV IV SR IV IV IV IV IV IV SR"),
    ("original", "fin"): _rows("IV IV FW FW LA LA LA TW CL IV"),
    ("original", "ack"): _rows("ES IV ES ES CW CW TW TW CL IV"),
    ("original", "rst"): _rows("IV CL CL CL CL CL CL CL CL CL"),
    ("reply", "syn"): _rows("IV S2 IV IV IV IV IV SS IV S2"),
    ("reply", "syn_ack"): _rows("IV SR IG IG IG IG IG IG IG SR"),
    ("reply", "fin"): _rows("IV IV FW FW LA LA LA TW CL IV"),
    ("reply", "ack"): _rows("IV IG SR ES CW CW TW TW CL IG"),
    ("reply", "rst"): _rows("IV CL CL CL CL CL CL CL CL CL"),
}
_TCP_COLUMN = {state: i for i, state in enumerate(TcpState)}
_TCP_EARLY_DROPPABLE = frozenset(
    {TcpState.FIN_WAIT, TcpState.LAST_ACK, TcpState.TIME_WAIT, TcpState.CLOSE, TcpState.CLOSE_WAIT}
)


def tcp_transition(
    entry: ConntrackEntry, direction: Direction, event: str, now_s: float, t: ConntrackTimeouts
) -> UpdateResult:
    """Apply one TCP packet to ``entry`` the way ``nf_conntrack_tcp_packet`` does.

    ``event`` is the packet's flag class (``get_conntrack_index``): rst, syn, syn_ack,
    fin (FIN with or without ACK), ack; ``data`` is an ACK carrying payload. Timeout after
    a valid packet: CLOSE's for a RST, else the new state's; before any reply an
    ESTABLISHED pick-up is capped at UNACK and a RST deletes the entry; ASSURED is set by
    the ACK that moves SYN_RECV (or ESTABLISHED) to ESTABLISHED after a reply.
    """
    if not isinstance(entry.state, TcpState):
        raise ValueError(f"not a tcp entry: {entry.original!r}")
    index = "ack" if event == "data" else event
    if index not in TCP_EVENTS:
        raise ValueError(f"unknown tcp event {event!r}")
    old = entry.state
    new = _TCP_TABLE[(direction, index)][_TCP_COLUMN[old]]
    last = entry.tcp_last
    simultaneous = entry.tcp_simultaneous_open
    if new is TcpState.SYN_SENT and old in (TcpState.TIME_WAIT, TcpState.CLOSE):
        # A SYN after a FIN or after our own RST opens a new connection on the same tuple.
        if entry.tcp_close_init or last == (direction, "rst"):
            return UpdateResult(Verdict.REOPEN, None)
        new = "IG"
    if new == "IG":
        if index == "syn_ack" and last is not None and last[1] == "syn" and last[0] != direction:
            # The SYN/ACK answers a SYN we ignored: endpoints are in sync, resync to them.
            old, new = TcpState.SYN_SENT, TcpState.SYN_RECV
        else:
            ignored = replace(entry, tcp_last=(direction, index))
            if direction == "reply":
                ignored = replace(ignored, seen_reply=True)
            return UpdateResult(Verdict.IGNORED, ignored)
    elif new == "IV":
        return UpdateResult(Verdict.INVALID, entry)
    assert isinstance(new, TcpState)
    if new is TcpState.SYN_SENT2:
        simultaneous = True
    elif new is TcpState.SYN_RECV and direction == "reply" and index == "ack" and simultaneous:
        new = TcpState.ESTABLISHED
    timeout_s = t.tcp_close_s if index == "rst" else t.tcp_timeout_s(new)
    assured = entry.assured
    if not entry.seen_reply:
        if index == "rst":
            return UpdateResult(Verdict.DESTROYED, None)
        if new is TcpState.ESTABLISHED:
            timeout_s = min(timeout_s, t.tcp_unack_s)
    elif new is TcpState.ESTABLISHED and old in (TcpState.SYN_RECV, TcpState.ESTABLISHED):
        assured = True
    updated = replace(
        entry,
        state=new,
        expires_s=now_s + timeout_s,
        assured=assured,
        seen_reply=entry.seen_reply or direction == "reply",
        tcp_last=(direction, index),
        tcp_close_init=entry.tcp_close_init or (old is not new and new is TcpState.FIN_WAIT),
        tcp_simultaneous_open=simultaneous,
    )
    return UpdateResult(Verdict.ACCEPT, updated)


def udp_transition(
    entry: ConntrackEntry, direction: Direction, now_s: float, t: ConntrackTimeouts
) -> ConntrackEntry:
    """Apply one UDP packet the way ``nf_conntrack_udp_packet`` does.

    Until a reply has been seen (the flag is set after the reply itself is handled) every
    packet refreshes with ``udp_s``. After it, each packet sets ASSURED and refreshes with
    ``udp_stream_s``, but with ``udp_s`` while within ``udp_stream_min_age_s`` of creation.
    """
    if entry.seen_reply:
        young = t.udp_stream_min_age_s is not None and now_s <= entry.created_s + (
            t.udp_stream_min_age_s
        )
        timeout_s, assured = (t.udp_s if young else t.udp_stream_s), True
    else:
        timeout_s, assured = t.udp_s, entry.assured
    seen = entry.seen_reply or direction == "reply"
    state = UdpState.ASSURED if assured else UdpState.REPLIED if seen else UdpState.UNREPLIED
    return replace(
        entry, state=state, expires_s=now_s + timeout_s, assured=assured, seen_reply=seen
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
