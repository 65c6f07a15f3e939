"""The consensus driver: the one task that owns the replica, and the effects it returns.

Theory of operation. The replica (``consensus/replica.py``) is sans-I/O: it takes an event and
returns effects. This module is its trio shell and the only code that calls ``handle``. It owns
the event channel every input goes through (peer messages, timers, "transactions available",
sessions opening), the replica's timers, and the send side of the committed-block channel.
Effects are performed in list order, synchronously on the trio thread: a ``PersistSafety`` or
``PersistBlock`` is on disk (one ``fdatasync``) before the next effect runs, so no vote or
timeout leaves before the state that justifies it is durable. A ``Commit`` is queued, in height
order, for the committer (:attr:`ConsensusDriver.commits`), which stores it before the exchange
applies it.

The seam is the replica's state: one owner reads it and changes it, every other part posts an
event (:meth:`ConsensusDriver.post`) or reads a derived answer (:meth:`ConsensusDriver.leader`,
:meth:`ConsensusDriver.high_qc`).
The host is attached after the start-up handshake; until then the effects that would reach
peers are dropped, as the replica's ``Start`` effects are (it greets peers again as sessions
open).

A node started with ``--reset-safety-state`` holds the replica's ``Start`` back: the events
that arrive first go to a :class:`SafetyReset`, which reads the certificates peers send (each
greets a new session with its ``SyncInfo``); once it knows how far the views went, the floor
state is made durable, the replica starts from it, and the held events are handed to it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

import trio
from lockstep.consensus.effects import (
    Broadcast,
    Commit,
    Effect,
    PersistBlock,
    PersistSafety,
    Send,
    SetTimer,
)
from lockstep.consensus.events import (
    Event,
    MessageReceived,
    PeerConnected,
    Start,
    TimerFired,
    TimerKind,
)
from lockstep.consensus.messages import Block, QuorumCert
from lockstep.consensus.replica import Replica
from lockstep.consensus.safety_rules import SafetyReset, SafetyState
from lockstep.consensus.sync import CommittedBlock
from lockstep.net.framing import Kind
from lockstep.net.host import Host

from .chain_app import ChainApp
from .context import NodeContext, now_ms
from .metrics import NodeMetrics
from .pending_store import PendingBlockStore
from .safety_store import SafetyStore

EVENT_QUEUE = 100_000
"""Events waiting for the replica; a full queue drops peer messages (they are retried)."""
RESET_HELD_EVENTS = 10_000
"""Events held for the replica while a safety reset learns its floor (the oldest go first:
peers greet again and re-send what matters)."""


class ConsensusDriver:
    """Feeds the replica its events and performs its effects, in order."""

    def __init__(
        self,
        ctx: NodeContext,
        replica: Replica,
        app: ChainApp,
        safety_store: SafetyStore,
        pending_store: PendingBlockStore,
        metrics: NodeMetrics,
    ) -> None:
        self.ctx = ctx
        self.replica = replica
        self.app = app
        self.safety_store = safety_store
        self.pending_store = pending_store
        self.metrics = metrics
        self.host: Host | None = None
        self._events_send, self._events_recv = trio.open_memory_channel[Event](EVENT_QUEUE)
        self._commits_send, self.commits = trio.open_memory_channel[CommittedBlock](math.inf)
        """Committed blocks in height order, for the committer (unbounded: a commit is never
        dropped, and the replica commits each block once)."""
        self._timers: dict[TimerKind, tuple[int, int]] = {}
        self._timers_changed = trio.Event()
        self._reset: SafetyReset | None = None
        """Learning the floor of a lost safety state; the replica has not started yet."""
        self._held: deque[Event] = deque(maxlen=RESET_HELD_EVENTS)
        self._start_with: tuple[Iterable[CommittedBlock], tuple[Block, ...]] = ((), ())

    def attach(self, host: Host) -> None:
        """From now on, effects for peers reach them (the handshake ran without a host)."""
        self.host = host

    def start(
        self,
        safety: SafetyState | None,
        committed: Iterable[CommittedBlock],
        pending: tuple[Block, ...],
        reset: SafetyReset | None = None,
    ) -> None:
        """Hand the replica its persisted state and perform what it answers at once.

        ``committed`` is consumed lazily by the replica; a ``StartupError`` it raises stops
        the node before any effect is performed. With ``reset`` (the state was lost) the
        start waits until the reset knows its floor (see the module doc)."""
        if reset is not None and not reset.ready(now_ms()):
            self._reset, self._start_with = reset, (committed, pending)
            self.ctx.log.warning(
                "safety_reset_waiting",
                peers_weight_needed=reset.needed_weight,
                local_view=reset.highest_view,
            )
            return
        if reset is not None:
            safety = self._persist_reset(reset)
        self.perform(self.replica.handle(Start(now_ms(), safety, committed, pending)))

    def _persist_reset(self, reset: SafetyReset) -> SafetyState:
        """The reset floor, durable before the replica can sign anything above it."""
        state = reset.state()
        self.safety_store.save(state.encode())
        self.ctx.log.warning(
            "safety_state_reset",
            floor_view=state.last_voted_view,
            highest_certificate_view=reset.highest_view,
            peers=sorted(reset.reporters),
            proven=reset.proven,
        )
        return state

    @property
    def waiting_for_reset(self) -> bool:
        """The replica is held back until a safety reset knows its floor."""
        return self._reset is not None

    def _learn(self, event: Event) -> None:
        """Before a reset replica starts: show the reset what peers send, hold the event."""
        reset = self._reset
        assert reset is not None
        if isinstance(event, MessageReceived):
            reset.observe(event.sender, event.message, event.now_ms)
        self._held.append(event)
        if not reset.ready(now_ms()):
            return
        self._reset = None
        committed, pending = self._start_with
        self._start_with = ((), ())
        state = self._persist_reset(reset)
        self.perform(self.replica.handle(Start(now_ms(), state, committed, pending)))
        while self._held:
            self.perform(self.replica.handle(self._held.popleft()))

    async def run(self) -> None:
        """The consensus loop: the only caller of ``replica.handle`` once the node runs."""
        async for event in self._events_recv:
            if self._reset is not None:
                self._learn(event)
                continue
            self.perform(self.replica.handle(event))
            self.metrics.view.set(self.replica.view)

    def perform(self, effects: list[Effect]) -> None:
        """Carry out effects in order; a safety write completes before the next effect."""
        host = self.host
        ctx = self.ctx
        for eff in effects:
            if isinstance(eff, PersistSafety):
                self.safety_store.save(eff.state.encode())
            elif isinstance(eff, Send):
                if eff.to == ctx.index:
                    self.post(MessageReceived(ctx.index, eff.message, now_ms()))
                elif host is not None:
                    self.send_direct(ctx.validator_keys[eff.to], eff.message)
            elif isinstance(eff, Broadcast):
                if host is not None:
                    host.broadcast(Kind.CONSENSUS, eff.message.encode())
            elif isinstance(eff, SetTimer):
                self._timers[eff.kind] = (eff.view, eff.at_ms)
                self._timers_changed.set()
            elif isinstance(eff, PersistBlock):
                b = eff.block
                self.pending_store.save(b.height, b.block_hash(ctx.chain_id), b.encode())
            elif isinstance(eff, Commit):
                self.app.note_final(eff.committed.block, eff.committed.qc.block_hash)
                self._commits_send.send_nowait(eff.committed)
            else:  # pragma: no cover - typed union
                raise TypeError(f"unknown effect {eff!r}")

    def send_direct(self, peer: bytes, message: Any) -> None:
        self.send_raw(peer, type(message).__name__, message.encode())

    def send_raw(self, peer: bytes, kind: str, payload: bytes) -> None:
        """Send one encoded consensus message to one peer; one that cannot fit a frame is
        dropped with a log line (the peer asks again, for less), never allowed to stop the
        node."""
        assert self.host is not None
        try:
            self.host.send(peer, Kind.DIRECT, payload)
        except ValueError as e:
            self.ctx.log.warning(
                "direct_message_dropped",
                peer=peer.hex()[:8],
                kind=kind,
                bytes=len(payload),
                reason=str(e),
            )

    def on_session(self, peer: bytes) -> None:
        """The host's session hook: a validator's session opened (the replica greets it)."""
        index = self.ctx.index_of.get(peer)
        if index is not None:  # observers take no part in consensus
            self.post(PeerConnected(index, now_ms()))

    def post(self, event: Event) -> None:
        """Queue an event for the replica; never blocks (a full queue drops it, logged)."""
        try:
            self._events_send.send_nowait(event)
        except trio.WouldBlock:
            self.ctx.log.warning("event_queue_full", dropped=type(event).__name__)

    async def run_timers(self) -> None:
        """The timer loop: fire the earliest armed timer, re-planned whenever one changes."""
        while True:
            self._timers_changed = trio.Event()
            if not self._timers:
                await self._timers_changed.wait()
                continue
            kind, (view, at_ms) = min(self._timers.items(), key=lambda kv: kv[1][1])
            delay_s = (at_ms - now_ms()) / 1000
            if delay_s > 0:
                with trio.move_on_after(delay_s):
                    await self._timers_changed.wait()
                    continue
            if self._timers.get(kind) == (view, at_ms):
                del self._timers[kind]
                self.post(TimerFired(kind, view, now_ms()))

    def high_qc(self) -> QuorumCert:
        """The highest certificate the replica knows (its own from before a restart, until
        one arrives from the network)."""
        return self.replica.pacemaker.high_qc

    def leader(self) -> int | None:
        """The current view's leader as this replica sees it, if it can say."""
        try:
            r = self.replica
            tip = r.tree.get(r.pacemaker.high_qc.block_hash)
            return None if tip is None else r.election.leader(r.view, tip)
        except Exception:  # the core may be between epochs; status must not fail
            return None
