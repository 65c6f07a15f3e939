"""One authenticated peer connection on trio: reader, writer and keepalive tasks.

Theory of operation: a :class:`PeerConnection` owns a stream whose Noise handshake is done. Its
*reader* receives as much as the socket has (up to ``RECV_BYTES``), opens the records, cuts the
plaintext into frames and hands the whole batch to the host in one call, so the per-read costs
(a trio receive, a decryption, a clock read) are shared by every frame in the read. Its *writer*
sleeps until something is queued, then drains the queues in priority order (consensus and
control first, then order gossip, then sync answers) into one plaintext run, seals it and writes
it with one ``send_all``: many small messages, one syscall. Enqueueing never blocks: each queue
is bounded in bytes; order gossip and sync answers beyond the bound are dropped for this peer
only, while overflowing the control queue (a peer that does not read even consensus traffic)
closes the connection. The *keepalive* sends a ping every ``ping_interval_s`` and closes the
connection when nothing has been received for ``idle_timeout_s`` or a write has been blocked
for ``write_timeout_s``.

Any failure closes only this connection, with a reason code the host logs
(``peer_disconnected reason=...``).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from .envelope import Goodbye, Ping
from .framing import FrameDecoder, FrameError, Kind, Priority, encode_frame
from .noise_session import RecordError, SecureSession

__all__ = ["PeerClosed", "PeerConnection", "PeerHost", "PeerSettings", "QueueLimits"]

RECV_BYTES = 256 * 1024
"""One receive call: large enough to take a burst of hundreds of records at once."""

WRITE_BATCH_BYTES = 512 * 1024
"""Plaintext per write: bounds how long one write delays a newly queued consensus frame."""

TX_FLUSH_BYTES = 64 * 1024
"""Queued order gossip that ends the flush delay at once: a full Noise record's worth (~350
orders); waiting longer would not make the write any cheaper per order."""


@dataclass(frozen=True, slots=True)
class QueueLimits:
    control_bytes: int = 64 * 1024 * 1024
    """32 maximal proposals; a peer this far behind on consensus traffic is disconnected."""
    tx_bytes: int = 16 * 1024 * 1024
    """~80k orders (~1 s of burst at the rate limit); beyond that orders to this peer drop."""
    bulk_bytes: int = 32 * 1024 * 1024
    """Four maximal sync answers."""


class PeerSettings(Protocol):
    """The limits and timers a connection reads from its host's configuration
    (``host.HostConfig`` is one)."""

    @property
    def queue_limits(self) -> QueueLimits: ...

    @property
    def tx_flush_delay_s(self) -> float: ...

    @property
    def ping_interval_s(self) -> float: ...

    @property
    def idle_timeout_s(self) -> float: ...

    @property
    def write_timeout_s(self) -> float: ...


class PeerHost(Protocol):
    """What a connection uses of the host that runs it (``host.Host`` is one): its settings,
    the sink for received frames, and the log of a full send queue. Declared here, so the
    connection depends on this much and not on the host, which is built on connections."""

    @property
    def config(self) -> PeerSettings: ...

    def _on_frames(
        self, conn: PeerConnection, frames: list[tuple[int, bytes]], now: float
    ) -> None: ...

    def _log_queue_full(self, conn: PeerConnection, queue: str, dropped: int) -> None: ...


class PeerClosed(Exception):
    """Raised inside a peer's tasks to close the connection with a reason code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


_ping_nonces = itertools.count(1)


class PeerConnection:
    """The live session with one peer. Created by the host after the handshake."""

    def __init__(
        self,
        host: PeerHost,
        stream: trio.SocketStream,
        session: SecureSession,
        initiated_locally: bool,
        address: str,
        now: float,
    ) -> None:
        self.host = host
        self.stream = stream
        self.session = session
        self.key = session.remote_key
        self.short = self.key.hex()[:8]
        self.initiated_locally = initiated_locally
        self.address = address
        self.connected_at = now
        self.last_rx = now
        self.limits = host.config.queue_limits
        self._queues: tuple[deque[bytes], deque[bytes], deque[bytes]] = (deque(), deque(), deque())
        self._queued_bytes = [0, 0, 0]
        self._wake = trio.Event()
        self._urgent = trio.Event()
        self._flush = False
        """Write queued orders without the gossip delay (a burst that is already a batch)."""
        self._cancel = trio.CancelScope()
        self.close_reason: str | None = None
        self.close_detail = ""
        self.done = trio.Event()
        self.dropped_tx = 0
        self.dropped_bulk = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.rtt_s: float | None = None
        self.remote_peers: frozenset[bytes] = frozenset()
        """The peer's own sessions, as it last announced them (``Kind.PEERS``)."""
        self._ping_sent: dict[int, float] = {}
        self._write_started: float | None = None
        self.iwant_served = 0
        """Orders sent in answer to this peer's IWANTs since the last heartbeat."""
        self.successor: PeerConnection | None = None
        """Set when a newer session to the same peer replaced this one (see ``retire``)."""

    # ----------------------------------------------------------------- sending (never blocks)

    def enqueue(self, frame: bytes, priority: int) -> bool:
        """Queue an encoded frame; return False if it was dropped (queue full or closed)."""
        if self.successor is not None:
            return self.successor.enqueue(frame, priority)
        if self.close_reason is not None:
            return False
        n = len(frame)
        qb = self._queued_bytes
        if priority == Priority.TX:
            if qb[1] + n > self.limits.tx_bytes:
                self.dropped_tx += 1
                if self.dropped_tx == 1 or self.dropped_tx % 10_000 == 0:
                    self.host._log_queue_full(self, "tx", self.dropped_tx)
                return False
        elif priority == Priority.CONTROL:
            if qb[0] + n > self.limits.control_bytes:
                self.close("send_queue_overflow", "control queue full: the peer does not read")
                return False
            if not self._urgent.is_set():
                self._urgent.set()
        elif qb[2] + n > self.limits.bulk_bytes:
            self.dropped_bulk += 1
            self.host._log_queue_full(self, "bulk", self.dropped_bulk)
            return False
        self._queues[priority].append(frame)
        qb[priority] += n
        if not self._wake.is_set():
            self._wake.set()
        if qb[1] >= TX_FLUSH_BYTES and not self._urgent.is_set():
            self._urgent.set()
        return True

    def flush(self) -> None:
        """Send the queued orders now rather than after ``tx_flush_delay_s``."""
        if self.successor is not None:
            self.successor.flush()
            return
        self._flush = True
        if not self._urgent.is_set():
            self._urgent.set()

    def retire(self, successor: PeerConnection) -> None:
        """Hand every unsent frame, and all later sends, to ``successor``; keep reading.

        Used when two sessions to one peer exist (simultaneous dials, a restart): frames queued
        here go out first on the successor, in order, so the switch loses nothing we hold.
        """
        assert successor is not self and successor.key == self.key
        self.successor = successor
        for prio in (0, 1, 2):
            q = self._queues[prio]
            if q:
                successor._queues[prio].extendleft(reversed(q))
                successor._queued_bytes[prio] += self._queued_bytes[prio]
                q.clear()
                self._queued_bytes[prio] = 0
        if not successor._wake.is_set():
            successor._wake.set()

    def close(self, reason: str, detail: str = "") -> None:
        """Close the connection (from any task); the first reason given is the one logged."""
        if self.close_reason is None:
            self.close_reason = reason
            self.close_detail = detail
        self._cancel.cancel()

    def queued_bytes(self) -> int:
        return sum(self._queued_bytes)

    # ----------------------------------------------------------------- tasks

    async def run(self) -> None:
        """Run until the connection ends; then close the socket and set ``done``."""
        try:
            with self._cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._guard, self._reader)
                    nursery.start_soon(self._guard, self._writer)
                    nursery.start_soon(self._guard, self._keepalive)
        finally:
            if self.close_reason is None:
                self.close_reason = "cancelled"
            await self._goodbye()
            self.done.set()

    async def _guard(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run one task; turn its failure into closing the connection with a reason."""
        try:
            await task()
        except PeerClosed as e:
            self.close(e.reason, e.detail)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            self.close("connection_lost", type(e).__name__)

    async def _goodbye(self) -> None:
        reason = self.close_reason or "closed"
        with trio.CancelScope(shield=True), trio.move_on_after(0.05):
            # Not after a write cut off midway: a record appended to half a record is garbage.
            if reason not in _SILENT_REASONS and self._write_started is None:
                try:
                    frame = encode_frame(Kind.GOODBYE, Goodbye(reason[:64]).encode())
                    await self.stream.send_all(self.session.seal(frame))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            await self.stream.aclose()

    async def _reader(self) -> None:
        records = self.session.reader()
        frames = FrameDecoder()
        receive = self.stream.receive_some
        on_frames = self.host._on_frames
        clock = trio.current_time
        data = self.session.leftover
        try:
            while True:
                if data:
                    self.bytes_received += len(data)
                    plain = records.feed(data)
                    if plain:
                        batch = frames.feed(plain)
                        if batch:
                            on_frames(self, batch, self.last_rx)
                data = await receive(RECV_BYTES)
                self.last_rx = clock()
                if not data:
                    if records.buffered:
                        raise PeerClosed("truncated_frame", "stream ended inside a record")
                    frames.close()
                    raise PeerClosed("eof")
        except FrameError as e:
            raise PeerClosed(e.reason, str(e)) from None
        except RecordError as e:
            raise PeerClosed(e.reason, str(e)) from None

    async def _writer(self) -> None:
        queues = self._queues
        qb = self._queued_bytes
        seal = self.session.seal
        send_all = self.stream.send_all
        clock = trio.current_time
        delay = self.host.config.tx_flush_delay_s
        while True:
            if not (queues[0] or queues[1] or queues[2]):
                self._wake = trio.Event()
                await self._wake.wait()
            if (
                delay > 0
                and not self._flush
                and not queues[0]
                and not queues[2]
                and qb[1] < TX_FLUSH_BYTES
            ):
                # Only gossip queued: give it ``delay`` to grow into a bigger write, unless a
                # consensus or control frame arrives meanwhile.
                self._urgent = trio.Event()
                with trio.move_on_after(delay):
                    await self._urgent.wait()
            self._flush = False
            parts: list[bytes] = []
            budget = WRITE_BATCH_BYTES
            for prio in (0, 1, 2):
                q = queues[prio]
                taken = 0
                while q and budget > 0:
                    f = q.popleft()
                    parts.append(f)
                    n = len(f)
                    taken += n
                    budget -= n
                qb[prio] -= taken
            if not parts:
                continue
            data = seal(parts[0] if len(parts) == 1 else b"".join(parts))
            self._write_started = clock()
            await send_all(data)
            self._write_started = None
            self.bytes_sent += len(data)

    async def _keepalive(self) -> None:
        cfg = self.host.config
        while True:
            await trio.sleep(cfg.ping_interval_s)
            now = trio.current_time()
            if now - self.last_rx > cfg.idle_timeout_s:
                raise PeerClosed("idle_timeout", f"nothing received for {now - self.last_rx:.1f}s")
            started = self._write_started
            if started is not None and now - started > cfg.write_timeout_s:
                # Checked here rather than with a cancel scope around every write: one
                # timer per ping interval instead of one per write.
                raise PeerClosed("write_timeout", f"a write blocked for {now - started:.1f}s")
            nonce = next(_ping_nonces)
            if len(self._ping_sent) > 16:
                self._ping_sent.clear()
            self._ping_sent[nonce] = now
            self.enqueue(encode_frame(Kind.PING, Ping(nonce).encode()), Priority.CONTROL)

    def on_pong(self, nonce: int, now: float) -> None:
        sent = self._ping_sent.pop(nonce, None)
        if sent is not None:
            self.rtt_s = now - sent


_SILENT_REASONS = frozenset({"eof", "connection_lost", "write_timeout", "goodbye"})
"""Reasons after which a Goodbye frame would not arrive (or was already exchanged)."""
