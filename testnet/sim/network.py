"""Simulated network and clock: a seeded event queue of message deliveries and timers.

Theory of operation: simulated time is an integer number of milliseconds. Everything that will
happen (a message arriving, a timer firing, a crash) is an entry in one heap ordered by
``(time, sequence number)``; the sequence number makes ties deterministic. Faults are drawn from
the scenario's own ``random.Random``, so a seed replays exactly. Until ``gst_ms`` (global
stabilisation time) the network may drop, duplicate, delay (and so reorder) messages and cut
partitions; from ``gst_ms`` on it delivers every message within ``stable_delay_ms``.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import Any

from lockstep.consensus.crypto import DOMAIN_BLOCK, sha256, signing_bytes


@dataclass(frozen=True)
class Partition:
    start_ms: int
    end_ms: int
    groups: tuple[frozenset[int], ...]
    """Validator indices per side; messages between sides are lost while it lasts."""
    held_ms: int | None = None
    """If set, messages across the cut are held, not lost, as TCP keeps retransmitting them:
    each direction of each cut link delivers them, in order, at ``end_ms`` plus a delay drawn
    from ``[0, held_ms]`` (where its retransmission timer happens to be), and stays in order
    after that."""

    def cuts(self, now_ms: int, a: int, b: int) -> bool:
        if not self.start_ms <= now_ms < self.end_ms:
            return False
        return not any(a in g and b in g for g in self.groups)


@dataclass(frozen=True)
class NetworkFaults:
    drop: float = 0.0
    duplicate: float = 0.0
    delay_ms: tuple[int, int] = (1, 10)
    """Delay range before ``gst_ms``; uniform, so messages reorder."""
    stable_delay_ms: tuple[int, int] = (1, 10)
    gst_ms: int = 0
    partitions: tuple[Partition, ...] = ()


@dataclass(frozen=True, slots=True)
class Entry:
    at_ms: int
    seq: int
    kind: str
    payload: Any


class EventQueue:
    """A heap of ``(at_ms, seq, kind, payload)``; ``seq`` breaks ties deterministically."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str, Any]] = []
        self._seq = 0

    def push(self, at_ms: int, kind: str, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at_ms, self._seq, kind, payload))

    def pop(self) -> Entry:
        return Entry(*heapq.heappop(self._heap))

    def __len__(self) -> int:
        return len(self._heap)

    def peek_time(self) -> int:
        return self._heap[0].at_ms


def block_hash(chain_id: bytes, block: Any) -> bytes:
    """A block's hash through the shared encoding memo (the simulator hashes every proposal)."""
    return sha256(signing_bytes(DOMAIN_BLOCK, chain_id, block.encode()))


class SimNetwork:
    """Decides when (and whether, and how often) each message arrives."""

    def __init__(self, faults: NetworkFaults, rng: random.Random) -> None:
        self.faults = faults
        self.rng = rng
        self.sent = 0
        self.dropped = 0
        self._released: dict[tuple[int, int, int], int] = {}
        self._in_order: dict[tuple[int, int], int] = {}
        """Links that held messages: the latest arrival so far (TCP delivers in order)."""

    def deliveries(self, now_ms: int, src: int, dst: int) -> list[int]:
        """Arrival times of one message from ``src`` to ``dst`` sent at ``now_ms``."""
        f = self.faults
        self.sent += 1
        stable = now_ms >= f.gst_ms
        not_before = self._in_order.get((src, dst))
        if not stable:
            for i, p in enumerate(f.partitions):
                if not p.cuts(now_ms, src, dst):
                    continue
                if p.held_ms is None:
                    self.dropped += 1
                    return []
                key = (i, src, dst)
                if key not in self._released:
                    self._released[key] = p.end_ms + self.rng.randint(0, p.held_ms)
                not_before = max(not_before or 0, self._released[key])
            if f.drop and not_before is None and self.rng.random() < f.drop:
                self.dropped += 1
                return []
        lo, hi = f.stable_delay_ms if stable else f.delay_ms
        times = [now_ms + self.rng.randint(lo, hi)]
        if not stable and f.duplicate and self.rng.random() < f.duplicate:
            times.append(now_ms + self.rng.randint(lo, hi))
        if not_before is not None:
            times = [max(t, not_before) for t in times]
            self._in_order[(src, dst)] = max(times)
        return times
