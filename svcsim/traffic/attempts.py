"""Bookkeeping arrays: attempts to resolve, their results, and the rows waiting to be recorded.

Everything is a struct of numpy arrays with small integer codes for strings (a shared
:class:`Vocab`), so a batch of thousands of attempts moves through the engine in a few array
operations and reaches the :class:`~svcsim.results.records.Recorder` in large batches.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from svcsim.netfilter.packet import Origin
from svcsim.results.records import Recorder

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I16 = npt.NDArray[np.int16]
I8 = npt.NDArray[np.int8]
B = npt.NDArray[np.bool_]
Obj = npt.NDArray[np.object_]


class Vocab:
    """Strings to small integer codes and back; code 0 is ``""``."""

    def __init__(self) -> None:
        self.strings: list[str] = [""]
        self._codes: dict[str, int] = {"": 0}
        self._array: Obj | None = None

    def code(self, text: str) -> int:
        """The code of ``text`` (assigned on first sight)."""
        found = self._codes.get(text)
        if found is None:
            found = self._codes[text] = len(self.strings)
            self.strings.append(text)
            self._array = None
        return found

    def decode(self, codes: npt.NDArray[Any]) -> Obj:
        """The strings of ``codes`` as an object array."""
        if self._array is None or len(self._array) != len(self.strings):
            self._array = np.array(self.strings, dtype=object)
        out: Obj = self._array[codes]
        return out


@dataclass(frozen=True, slots=True)
class Client:
    """One client: the records' label, its source IP, its node and where its packets enter."""

    label: str
    ip: str
    node: str
    origin: Origin


class ClientRegistry:
    """Every client ever seen, by id (a Pod that reappears with a new IP is a new client)."""

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self._ids: dict[tuple[str, str, str], int] = {}

    def id_of(self, client: Client) -> int:
        """The id of ``client`` (registered on first sight)."""
        key = (client.label, client.ip, client.node)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self.clients)
            self.clients.append(client)
        return found

    def __getitem__(self, client_id: int) -> Client:
        return self.clients[client_id]

    def __len__(self) -> int:
        return len(self.clients)


_NAMES: dict[type, tuple[str, ...]] = {}
"""Field names of the array classes below, by class. Module-level on purpose: a constant per
class of this module (a handful of entries), holding no run's objects."""


def _names(cls: type) -> tuple[str, ...]:
    found = _NAMES.get(cls)
    if found is None:
        found = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return found


class _Arrays:
    """Shared helpers of the struct-of-arrays classes below (all fields are 1-D arrays)."""

    def __len__(self) -> int:
        return len(getattr(self, _names(type(self))[0]))

    def take(self, index: npt.NDArray[Any] | slice) -> Self:
        """The rows at ``index`` (an integer or boolean array, or a slice: views then)."""
        return type(self)(**{n: getattr(self, n)[index] for n in _names(type(self))})

    @classmethod
    def concat(cls, parts: list[Self]) -> Self:
        """All rows of ``parts``, in order."""
        parts = [p for p in parts if len(p)] or parts[:1]
        if len(parts) == 1:
            return parts[0]
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in _names(cls)})


@dataclass(slots=True)
class Attempts(_Arrays):
    """Request attempts: ``id`` orders ties, ``w`` is the workload index, ``client`` an id.

    ``t0`` is when the attempt began and ``syn`` how many SYN retransmits it has sent: an
    attempt whose ICMP error was rate-limited comes back at ``t`` > ``t0`` with its next SYN
    (:mod:`svcsim.traffic.icmp`); otherwise ``t0 == t`` and ``syn == 0``.
    """

    id: I64
    t: F64
    w: I32
    client: I32
    attempt: I16
    t0: F64
    syn: I16

    @classmethod
    def empty(cls) -> Attempts:
        """No attempts."""
        return cls(
            np.empty(0, np.int64),
            np.empty(0),
            np.empty(0, np.int32),
            np.empty(0, np.int32),
            np.empty(0, np.int16),
            np.empty(0),
            np.empty(0, np.int16),
        )

    @classmethod
    def first(cls, id: I64, t: F64, w: I32, client: I32, attempt: I16) -> Attempts:
        """Attempts starting with their first SYN at ``t``."""
        return cls(id, t, w, client, attempt, t, np.zeros(len(t), np.int16))

    def sorted(self) -> Attempts:
        """The attempts in processing order: by time, then id."""
        return self.take(np.lexsort((self.id, self.t)))


@dataclass(slots=True)
class Results(_Arrays):
    """What each attempt of a batch met, aligned with it.

    ``served`` marks attempts a process is working on until ``end`` (they may still be reset);
    ``backend`` is the vocab code of that Pod (0 if none); ``handle`` is the flow's conntrack
    handle for a later reset (engine-specific; None if none); ``expiry`` is the same for the
    batched engine's anonymous flows, kept as a number (their entry's expiry; NaN if none).
    """

    latency: F64
    outcome: I8
    cause: I8
    endpoint: I32
    pod: I32
    new_flow: B
    conn_id: I64
    served: B
    handle: Obj
    expiry: F64
    icmp: B
    """The answer is a REJECT's ICMP error (:mod:`svcsim.traffic.icmp` decides its fate)."""

    @classmethod
    def blank(cls, n: int) -> Results:
        """``n`` rows to fill in."""
        return cls(
            np.zeros(n),
            np.zeros(n, np.int8),
            np.zeros(n, np.int8),
            np.zeros(n, np.int32),
            np.zeros(n, np.int32),
            np.zeros(n, np.bool_),
            np.full(n, -1, np.int64),
            np.zeros(n, np.bool_),
            np.full(n, None, dtype=object),
            np.full(n, np.nan),
            np.zeros(n, np.bool_),
        )


@dataclass(slots=True)
class Rows(_Arrays):
    """Finished or in-flight attempts: everything a record needs, as codes."""

    t: F64
    end: F64
    latency: F64
    w: I32
    client: I32
    node: I32
    service: I32
    attempt: I16
    conn_id: I64
    new_flow: B
    endpoint: I32
    pod: I32
    outcome: I8
    cause: I8
    served: B
    handle: Obj
    expiry: F64

    @classmethod
    def of(cls, attempts: Attempts, results: Results, node: I32, service: I32) -> Rows:
        """Join a batch of attempts with their results."""
        return cls(
            attempts.t,
            attempts.t + results.latency,
            results.latency,
            attempts.w,
            attempts.client,
            node,
            service,
            attempts.attempt,
            results.conn_id,
            results.new_flow,
            results.endpoint,
            results.pod,
            results.outcome,
            results.cause,
            results.served,
            results.handle,
            results.expiry,
        )


_RECORDED = (
    "t",
    "end",
    "latency",
    "w",
    "client",
    "node",
    "service",
    "attempt",
    "conn_id",
    "new_flow",
    "endpoint",
    "pod",
    "outcome",
    "cause",
)
"""The :class:`Rows` columns that make a record."""


class RecordBuffer:
    """Rows waiting to be written; decoded to strings and handed to the Recorder in bulk."""

    def __init__(
        self,
        recorder: Recorder,
        vocab: Vocab,
        workloads: list[str],
        clients: ClientRegistry,
        nodes: list[str],
        flush_rows: int = 1 << 16,
    ) -> None:
        self.recorder = recorder
        self.vocab = vocab
        self.workloads = np.array(workloads, dtype=object)
        self.clients = clients
        self.nodes = np.array(nodes, dtype=object)
        self.flush_rows = flush_rows
        self._parts: list[tuple[Rows, npt.NDArray[np.bool_] | None]] = []
        self._count = 0

    def add(self, rows: Rows, keep: npt.NDArray[np.bool_] | None = None) -> None:
        """Queue ``rows`` (those ``keep`` marks, if given; flushed when enough have gathered)."""
        count = len(rows) if keep is None else int(np.count_nonzero(keep))
        if count:
            self._parts.append((rows, keep))
            self._count += count
            if self._count >= self.flush_rows:
                self.flush()

    def flush(self) -> None:
        """Hand every queued row to the Recorder."""
        if not self._parts:
            return
        parts, self._parts, self._count = self._parts, [], 0
        # Only the recorded columns (not the engine's handles and expiries).
        rows = {
            name: np.concatenate(
                [getattr(p, name) if keep is None else getattr(p, name)[keep] for p, keep in parts]
            )
            for name in _RECORDED
        }
        labels = [c.label for c in self.clients.clients]
        strings = self.vocab.strings
        # Codes plus their strings: the Recorder looks only at the strings in use.
        self.recorder.add_requests_coded(
            {"workload": self.workloads.tolist(), "client": labels,
             "src_node": self.nodes.tolist(), "service": strings, "endpoint": strings,
             "pod": strings},
            t_s=rows["t"],
            end_s=rows["end"],
            latency_s=rows["latency"],
            workload=rows["w"],
            client=rows["client"],
            src_node=rows["node"],
            service=rows["service"],
            attempt=rows["attempt"],
            conn_id=rows["conn_id"],
            new_flow=rows["new_flow"],
            endpoint=rows["endpoint"],
            pod=rows["pod"],
            outcome=rows["outcome"],
            cause=rows["cause"],
        )  # fmt: skip
