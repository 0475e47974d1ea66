"""One conntrack entry as a value, and how one packet of its flow changes it.

A flow is keyed by its :class:`FlowTuple` in each direction; its :class:`ConntrackEntry`
holds the NAT decision (the reply tuple), the protocol state and the expiry. The pure
functions :func:`tcp_transition` and :func:`udp_transition` are the per-protocol state
machines with their :class:`ConntrackTimeouts`; the table that holds entries is
:class:`svcsim.netfilter.conntrack.ConntrackTable`.

Time is a float ``now_s`` passed in by the caller; nothing here reads a clock.
Kernel sources (torvalds/linux) modelled here:

* ``net/netfilter/nf_conntrack_proto_tcp.c``: ``tcp_conntracks[][][]``, ``tcp_timeouts[]``,
  ``nf_conntrack_tcp_packet``, ``tcp_new``.
* ``net/netfilter/nf_conntrack_proto_udp.c``: ``udp_timeouts[]``, ``nf_conntrack_udp_packet``.
* ``net/netfilter/nf_conntrack_core.c``: ``nf_ct_is_expired`` (dead once ``now >= timeout``),
  ``nf_ct_invert_tuple``.

Not modelled: TCP sequence/window tracking (every segment is taken as in-window and
acknowledged, so RETRANS/UNACK timeouts and RFC 5961 challenge ACKs never apply), and
SCTP's state machine (SCTP tuples exist; SCTP entries cannot be created).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

Direction = Literal["original", "reply"]
PROTOCOLS = frozenset({"tcp", "udp", "sctp"})
TCP_EVENTS = frozenset({"syn", "syn_ack", "ack", "fin", "rst", "data"})
UDP_EVENTS = frozenset({"original", "reply"})


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
