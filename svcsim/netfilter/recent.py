"""The ``-m recent`` match's memory: named lists of recently seen addresses (xt_recent).

kube-proxy builds ClientIP session affinity on it: the Service chain holds one
``--rcheck --seconds T --reap`` rule per endpoint list, and the endpoint chain records the
client's source address with ``--set`` before it DNATs (kube-facts §1.10). What follows is the
kernel's ``recent_mt`` (torvalds/linux ``net/netfilter/xt_recent.c``; read at @482458f0 and
@0079c5ae, plus the 2020 fix "netfilter: xt_recent: Fix attempt to update deleted entry"):

* A list holds at most ``ip_list_tot`` (default 100) addresses, in LRU order: a new address
  evicts the least recently *updated* one when the list is full (``recent_entry_init``).
* An address keeps a ring of timestamps. Newer kernels size it per list as
  ``roundup_pow_of_two(ip_pkt_list_tot)`` when that module parameter is set above the rule's
  ``--hitcount``, else ``roundup_pow_of_two(hitcount)``, else 32 (``recent_mt_check``; the
  parameter's default became 0, "retained for backwards compatibility"). A list whose ring must
  grow is flushed. Older kernels kept exactly ``ip_pkt_list_tot`` = 20 stamps.
* ``--set`` adds the address (or stamps and LRU-refreshes it) and always matches.
* ``--rcheck``/``--update`` match iff the address is listed and at least ``--hitcount`` of its
  stamps (one if 0) are not older than ``--seconds``: a stamp counts unless
  ``time_after(now - seconds, stamp)``, i.e. *exactly* ``seconds`` old still counts.
  ``--update`` stamps and LRU-refreshes the address when the rule's result is true.
* ``--reap`` (with ``--seconds``, only when the address was found) then removes the single
  LRU-oldest address of the list if its newest stamp is older than ``seconds`` - unless that
  address is the one about to be updated.
* ``--remove`` deletes the address and matches iff it was listed.
* ``!`` inverts the result, not the side effects; an address not listed yields the inverted
  "false" (so ``! --rcheck`` matches unknown addresses).
* The lookup key is the source (``--rsource``, the default) or destination address ANDed with
  the list's ``--mask``; the list keeps the mask of the rule that created it.

Jiffies become a float ``now_s`` passed in. ``--rttl`` is not modelled (the rule model has no
such option). The kernel sizes the stamp ring when a rule is loaded; here it is sized when a rule
first evaluates against the list, which differs only if rules with different ``--hitcount``
share a list.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

from svcsim.netfilter.model import IPAddress, RecentMatch

IP_LIST_TOT: Final = 100
"""Module default: addresses remembered per list (``ip_list_tot``)."""

XT_RECENT_MAX_NSTAMPS: Final = 256
"""``--hitcount`` must stay below this (``recent_mt_check``)."""

_DEFAULT_STAMPS: Final = 32


def _roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def stamp_capacity(ip_pkt_list_tot: int, hit_count: int) -> int:
    """Timestamps kept per address for a rule with ``hit_count``, as newer kernels size it."""
    if ip_pkt_list_tot and hit_count < ip_pkt_list_tot:
        return _roundup_pow_of_two(ip_pkt_list_tot)
    if hit_count:
        return _roundup_pow_of_two(hit_count)
    return _DEFAULT_STAMPS


@dataclass(slots=True)
class _Entry:
    """One remembered address: its timestamps, oldest first (the newest is last)."""

    stamps: deque[float]


@dataclass(slots=True)
class _List:
    """One named list: entries in LRU order (first = least recently updated)."""

    mask: IPAddress
    capacity: int
    entries: OrderedDict[IPAddress, _Entry] = field(default_factory=OrderedDict)


@dataclass(frozen=True, slots=True)
class RecentEntry:
    """A read-only view of one remembered address (what ``/proc/net/xt_recent/NAME`` lists)."""

    address: str
    stamps_s: tuple[float, ...]

    @property
    def last_seen_s(self) -> float:
        """The newest timestamp."""
        return self.stamps_s[-1]


def _address(value: IPAddress | str) -> IPAddress:
    return value if not isinstance(value, str) else ipaddress.ip_address(value)


def _masked(address: IPAddress, mask: IPAddress) -> IPAddress:
    if address.version != mask.version:
        # A v4 list and a v6 packet never meet in one ip(6)tables family; keep the address.
        return address
    return ipaddress.ip_address(int(address) & int(mask))


class RecentTable:
    """All xt_recent lists of one network namespace, keyed by list name.

    Methods mutate the lists the way the kernel does; ``now_s`` is the caller's clock.
    """

    def __init__(self, *, ip_list_tot: int = IP_LIST_TOT, ip_pkt_list_tot: int = 0) -> None:
        if ip_list_tot < 1:
            raise ValueError(f"ip_list_tot {ip_list_tot!r} must be >= 1")
        if not 0 <= ip_pkt_list_tot < XT_RECENT_MAX_NSTAMPS:
            raise ValueError(f"ip_pkt_list_tot {ip_pkt_list_tot!r} must be in [0, 255]")
        self.ip_list_tot = ip_list_tot
        self.ip_pkt_list_tot = ip_pkt_list_tot
        self._lists: dict[str, _List] = {}

    # --- the match ----------------------------------------------------------------------

    def evaluate(
        self, match: RecentMatch, src: IPAddress | str, dst: IPAddress | str, now_s: float
    ) -> bool:
        """Evaluate ``match`` for a packet from ``src`` to ``dst``: the result and its effects.

        Raises :class:`ValueError` for option combinations the kernel refuses to load
        (``recent_mt_check``): ``--seconds``/``--hitcount``/``--reap`` with ``--set`` or
        ``--remove``, ``--reap`` without ``--seconds``, ``--hitcount`` >= 256.
        """
        _validate(match)
        key = _address(src if match.rsource else dst)
        table = self._list(match.name, ipaddress.ip_address(match.mask), match.hitcount)
        key = _masked(key, table.mask)
        entry = table.entries.get(key)
        result = match.negated
        if entry is None:
            if match.command == "set":
                self._insert(table, key, now_s)
                result = not result
            return result
        if match.command == "set":
            result = not result
        elif match.command == "remove":
            del table.entries[key]
            return not result
        else:  # rcheck / update
            if _hits(entry, match.seconds, match.hitcount, now_s):
                result = not result
            if match.reap:
                self._reap(table, now_s - match.seconds, key, match.command == "update" and result)
        if match.command == "set" or (match.command == "update" and result):
            entry.stamps.append(now_s)
            table.entries.move_to_end(key)
        return result

    # --- the four commands, for callers that do not hold a rule -------------------------

    def set(self, name: str, address: IPAddress | str, now_s: float) -> None:
        """``--set``: remember ``address`` in list ``name`` (or refresh it)."""
        self.evaluate(RecentMatch(name=name, command="set"), address, address, now_s)

    def rcheck(
        self,
        name: str,
        address: IPAddress | str,
        now_s: float,
        *,
        seconds: int = 0,
        hitcount: int = 0,
        reap: bool = False,
    ) -> bool:
        """``--rcheck``: True if ``address`` is listed with enough recent stamps."""
        match = RecentMatch(name, "rcheck", seconds=seconds, reap=reap, hitcount=hitcount)
        return self.evaluate(match, address, address, now_s)

    def update(
        self,
        name: str,
        address: IPAddress | str,
        now_s: float,
        *,
        seconds: int = 0,
        hitcount: int = 0,
        reap: bool = False,
    ) -> bool:
        """``--update``: like :meth:`rcheck`, and stamp the address when it matched."""
        match = RecentMatch(name, "update", seconds=seconds, reap=reap, hitcount=hitcount)
        return self.evaluate(match, address, address, now_s)

    def remove(self, name: str, address: IPAddress | str) -> bool:
        """``--remove``: forget ``address``; True if it was listed."""
        return self.evaluate(RecentMatch(name, "remove"), address, address, 0.0)

    # --- inspection ---------------------------------------------------------------------

    def names(self) -> tuple[str, ...]:
        """Names of the lists that exist (a list exists once a rule has used it)."""
        return tuple(self._lists)

    def entries(self, name: str) -> tuple[RecentEntry, ...]:
        """The addresses of list ``name`` in LRU order (least recently updated first)."""
        table = self._lists.get(name)
        if table is None:
            return ()
        return tuple(RecentEntry(str(a), tuple(e.stamps)) for a, e in table.entries.items())

    def flush(self, name: str | None = None) -> None:
        """Empty one list, or all (``echo / > /proc/net/xt_recent/NAME``)."""
        for list_name, table in self._lists.items():
            if name is None or list_name == name:
                table.entries.clear()

    def copy(self) -> RecentTable:
        """An independent copy with the same lists, entries and stamps."""
        twin = RecentTable(ip_list_tot=self.ip_list_tot, ip_pkt_list_tot=self.ip_pkt_list_tot)
        for name, table in self._lists.items():
            entries = OrderedDict(
                (a, _Entry(deque(e.stamps, maxlen=table.capacity)))
                for a, e in table.entries.items()
            )
            twin._lists[name] = _List(table.mask, table.capacity, entries)
        return twin

    def snapshot(self) -> dict[str, tuple[RecentEntry, ...]]:
        """Every list's entries, for comparing two tables."""
        return {name: self.entries(name) for name in self._lists}

    # --- internals ----------------------------------------------------------------------

    def _list(self, name: str, mask: IPAddress, hit_count: int) -> _List:
        capacity = stamp_capacity(self.ip_pkt_list_tot, hit_count)
        table = self._lists.get(name)
        if table is None:
            table = self._lists[name] = _List(mask, capacity)
        elif capacity > table.capacity:
            # recent_mt_check flushes a list whose stamp ring has to grow.
            table.entries.clear()
            table.capacity = capacity
        return table

    def _insert(self, table: _List, key: IPAddress, now_s: float) -> None:
        if len(table.entries) >= self.ip_list_tot:
            table.entries.popitem(last=False)
        table.entries[key] = _Entry(deque([now_s], maxlen=table.capacity))

    @staticmethod
    def _reap(table: _List, horizon_s: float, working: IPAddress, updating: bool) -> None:
        oldest = next(iter(table.entries))
        if oldest == working and updating:
            return
        if table.entries[oldest].stamps[-1] < horizon_s:
            del table.entries[oldest]


def _hits(entry: _Entry, seconds: int, hit_count: int, now_s: float) -> bool:
    horizon_s = now_s - seconds
    needed = max(hit_count, 1)
    fresh = sum(1 for stamp in entry.stamps if not seconds or stamp >= horizon_s)
    return fresh >= needed


def _validate(match: RecentMatch) -> None:
    if match.command not in ("set", "rcheck", "update", "remove"):
        raise ValueError(f"unknown recent command {match.command!r}")
    if match.command in ("set", "remove") and (match.seconds or match.hitcount or match.reap):
        raise ValueError(f"--{match.command} takes no --seconds/--hitcount/--reap")
    if match.reap and not match.seconds:
        raise ValueError("--reap needs --seconds")
    if match.hitcount >= XT_RECENT_MAX_NSTAMPS:
        raise ValueError(f"--hitcount {match.hitcount} is above {XT_RECENT_MAX_NSTAMPS - 1}")
