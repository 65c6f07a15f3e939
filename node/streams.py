"""Event streams for WebSocket subscribers: sequence numbers, snapshots, no silent gaps.

Theory of operation: each stream (``blocks``, ``book:<market>``, ``trades:<market>``,
``fills:<account hex>``, ``orders:<account hex>``) has a sequence number that increases by one
per published event. A subscriber first receives a *snapshot* carrying the sequence number it
reflects, then every later event in order. Each subscriber has a bounded queue; a subscriber too
slow to keep up is not skipped ahead silently — it is closed with the reason ``slow_consumer``,
and a client that resubscribes gets a fresh snapshot. So a client either sees every event after
its snapshot or learns that it must resynchronise: it can never miss one unknowingly.

Publishing never blocks the node: ``publish`` is synchronous and only appends to queues.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

SUBSCRIBER_QUEUE_EVENTS = 1_024
"""Events buffered per subscriber before it counts as a slow consumer (~seconds at full load)."""

MAX_SUBSCRIPTIONS_PER_CONNECTION = 32

STREAM_NAME = re.compile(
    r"^(blocks|book:\d{1,5}|trades:\d{1,5}|fills:[0-9a-f]{64}|orders:[0-9a-f]{64})$"
)


class StreamError(ValueError):
    """A subscription request names no valid stream."""


@dataclass
class Subscriber:
    stream: str
    send: trio.MemorySendChannel[dict[str, Any]]
    receive: trio.MemoryReceiveChannel[dict[str, Any]]
    closed_reason: str | None = None


@dataclass
class _Stream:
    seq: int = 0
    subscribers: list[Subscriber] = field(default_factory=list)


Snapshotter = Callable[[str], Any]
"""Given a stream name, the JSON-ready current state (book levels, recent trades, …)."""


class StreamHub:
    def __init__(self, snapshot: Snapshotter) -> None:
        self._snapshot = snapshot
        self._streams: dict[str, _Stream] = {}
        self.dropped_slow = 0

    def wants(self, stream: str) -> bool:
        """Whether anyone subscribes to ``stream`` (build the event only if so)."""
        s = self._streams.get(stream)
        return bool(s and s.subscribers)

    def watched(self, prefix: str) -> list[str]:
        """The streams named ``prefix…`` that have subscribers (so a publisher can skip the
        work of naming a stream per event when no one listens)."""
        return [n for n, s in self._streams.items() if s.subscribers and n.startswith(prefix)]

    def seq(self, stream: str) -> int:
        s = self._streams.get(stream)
        return s.seq if s else 0

    def subscribe(self, stream: str, snapshot: Callable[[], Any] | None = None) -> Subscriber:
        """Register a subscriber; its first queued message is the snapshot: ``snapshot()`` if
        given (a caller that read the state itself, at this stream's current sequence number),
        else the hub's snapshotter's."""
        if not STREAM_NAME.match(stream):
            raise StreamError(
                f"unknown stream {stream!r}: use blocks, book:<market>, trades:<market>, "
                "fills:<account hex> or orders:<account hex>"
            )
        s = self._streams.setdefault(stream, _Stream())
        send, receive = trio.open_memory_channel[dict[str, Any]](SUBSCRIBER_QUEUE_EVENTS + 1)
        sub = Subscriber(stream, send, receive)
        send.send_nowait(
            {
                "stream": stream,
                "seq": s.seq,
                "type": "snapshot",
                "data": self._snapshot(stream) if snapshot is None else snapshot(),
            }
        )
        s.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        s = self._streams.get(sub.stream)
        if s and sub in s.subscribers:
            s.subscribers.remove(sub)
        sub.send.close()

    def publish(self, stream: str, data: Any) -> int:
        """Append one event to a stream; returns its sequence number."""
        s = self._streams.setdefault(stream, _Stream())
        s.seq += 1
        if not s.subscribers:
            return s.seq
        event = {"stream": stream, "seq": s.seq, "type": "update", "data": data}
        for sub in list(s.subscribers):
            try:
                sub.send.send_nowait(event)
            except trio.WouldBlock:
                sub.closed_reason = "slow_consumer"
                self.dropped_slow += 1
                self.unsubscribe(sub)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self.unsubscribe(sub)
        return s.seq
