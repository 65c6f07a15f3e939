"""The node daemon: net ↔ consensus replica ↔ mempool ↔ exchange ↔ RPC, in one trio nursery.

Theory of operation. One task owns the consensus replica and feeds it events from a single
channel (peer messages, timers, "transactions available"), performing the effects it returns in
order: a ``PersistSafety`` is fsync'd before anything after it happens, so no vote or timeout
ever leaves before the state that justifies it is durable. ``Commit`` effects go, in height
order, to the committer task, which stores each committed block with its certificate in the
block store (durably) *before* the exchange applies it on the SQLite worker; then it updates
the mempool, the state-root history, metrics, streams and RPC waiters.

Start-up (CometBFT's handshake): compare the block store's height with the ledger's. A ledger
ahead of the store cannot be explained and stops the node; a ledger behind it is replayed from
the store; every stored block's state-root claim is checked against the roots this node computed.
Then the replica starts from the persisted safety state and the recent committed blocks.

Transactions arrive from the RPC and from gossip. Both paths verify the signature and the static
rules on the trio thread, then the stateful rules on the worker, then enter the mempool; the RPC
path also gossips them. A node never forwards what it has not validated.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from lockstep.consensus import limits
from lockstep.consensus.actions import SignedTx, decode_and_verify_tx, decode_tx_with_id
from lockstep.consensus.block_tree import election_history_blocks
from lockstep.consensus.codec import CodecError, decode, remember_encoding
from lockstep.consensus.crypto import SignatureError
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
    TransactionsAvailable,
)
from lockstep.consensus.genesis import Genesis
from lockstep.consensus.messages import Block, Proposal, QuorumCert, Timeout, Vote, VrfTicket
from lockstep.consensus.replica import Replica
from lockstep.consensus.safety_rules import SafetyState
from lockstep.consensus.sync import (
    MAX_SYNC_BLOCKS,
    BlockRequest,
    BlockResponse,
    CommittedBlock,
    CommittedRequest,
    CommittedResponse,
    SyncInfo,
    block_response_bytes,
    committed_response_bytes,
    sync_block_bytes,
)
from lockstep.net.framing import Kind
from lockstep.net.gossip import Verdict
from lockstep.net.host import Host, HostConfig
from lockstep.net.sync import MAX_SYNC_RESPONSE_BYTES
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import views
from .block_store import BlockStore, StoredBlock
from .chain_app import ChainApp
from .config import NodeConfig
from .exchange.executor import BlockResult, Exchange
from .exchange.mempool_rules import Reason, check_static
from .genesis_file import read_genesis_file
from .keys import ValidatorKeys, load_validator_keys
from .mempool import Mempool, PendingTx, PoolReason
from .mempool_journal import MempoolJournal
from .metrics import NodeMetrics
from .pending_store import PendingBlockStore
from .rpc import Admission, RpcLimits, build_rpc_app
from .safety_store import SafetyStore
from .streams import StreamHub
from .worker import SqliteWorker

log = structlog.get_logger("lockstep.node")

CONSENSUS_MESSAGES = (
    Proposal,
    Vote,
    Timeout,
    SyncInfo,
    BlockRequest,
    BlockResponse,
    CommittedRequest,
    CommittedResponse,
    VrfTicket,
)
MAX_CONSENSUS_MESSAGE_BYTES = MAX_SYNC_RESPONSE_BYTES
EVENT_QUEUE = 100_000
"""Events waiting for the replica; a full queue drops peer messages (they are retried)."""
RECENT_RESULTS = 20_000
"""Transaction results kept in memory for ``/v1/actions`` and ``wait=true`` (a few seconds at
full load); older committed and rejected ones are read from the ledger."""
EXPIRED_RESULTS = 100_000
"""Expirations are in no block, so the node remembers them on their own, for longer (they are
rare: an action expires only when no sequencer included it in time)."""
RECENT_FILLS = 10_000
"""Fills held for ``wait=true`` callers between the commit and their wake-up."""
RECENT_BLOCKS = 64
"""Committed blocks kept as their RPC documents (seconds at full load): pollers of
``/v1/blocks`` read the newest blocks, which then cost no decode or re-encode."""
MAX_COALESCED_SUBMISSIONS = 1_024
"""Single RPC submissions admitted together (and the queue bound before callers wait)."""
DECODED_AHEAD = 1_024
"""Consensus messages decoded by the gossip validator and not yet taken by the consensus loop
(a bound for messages the loop never takes; a proposal can be megabytes)."""
DECODED_TXS_AHEAD = 8_192
"""The same for gossiped transactions, which come in bursts (about a kilobyte each decoded);
one not found there is decoded again."""
EDGE_DEFERRED = frozenset({Reason.ORDER_NOT_FOUND})
"""Refusals the edge leaves to the block: a cancel may name an order that is still pending."""
MEMPOOL_SYNC_INTERVAL_S = 0.5
MEMPOOL_RESEND_AFTER_S = 3.0
"""A transaction pending this long is sent again, straight to the current sequencer."""
JOURNAL_REPLAY_PEER_WAIT_S = 5.0
JOURNAL_REPLAY_CATCH_UP_WAIT_S = 30.0
"""At start, wait this long for peers before re-gossiping journalled transactions."""
T = TypeVar("T")
SYNC_FRAME_BYTES = limits.MAX_MESSAGE_BYTES - 64 * 1024
"""Stored blocks one sync response carries at most: a DIRECT frame, less room to spare."""
COMMIT_BURST_BLOCKS = 256
"""Committed blocks stored with one disk flush, at most (a catch-up commits them in bursts)."""
APPLY_CHUNK_TXS = 1_000
"""Transactions applied per worker trip at most, in whole blocks (~40 ms): results of the first
block of a run wait for the whole run, so it stays short."""
RESTART_ROOT_CHECKS = 256
"""Newest stored blocks whose state-root claims a restarting node checks against its ledger
(as it hands them to the replica, which decodes them anyway)."""
JOURNAL_REPLAY_CHUNK = 1_000
"""Journalled transactions decoded and re-admitted at a time at start (most were included while
the node was down, and are refused as replays): the journal may hold tens of thousands."""


_COMMITTED, _REJECTED, _EXPIRED = 0, 1, 2
_STATUS_NAMES = ("committed", "rejected", "expired")


def now_ms() -> int:
    """Wall-clock milliseconds: block timestamps are the proposer's clock (bounded by peers)."""
    return time.time_ns() // 1_000_000


class StartupError(Exception):
    """The node's stores cannot be reconciled; the message says what to do."""


@dataclass(frozen=True)
class NodePaths:
    home: Path
    config_file: Path
    genesis_file: Path
    key_file: Path
    data_dir: Path

    @classmethod
    def of(cls, cfg: NodeConfig, config_file: Path) -> NodePaths:
        return cls(
            home=cfg.home_dir(config_file),
            config_file=config_file,
            genesis_file=cfg.resolve(config_file, cfg.node.genesis_file),
            key_file=cfg.resolve(config_file, cfg.node.validator_key_file),
            data_dir=cfg.resolve(config_file, cfg.node.data_dir),
        )


class Node:
    """One validator node. ``await nursery.start(node.run)``; cancel the nursery to stop."""

    def __init__(
        self,
        cfg: NodeConfig,
        paths: NodePaths,
        genesis: Genesis | None = None,
        keys: ValidatorKeys | None = None,
    ) -> None:
        self.cfg = cfg
        self.paths = paths
        self.genesis = genesis or read_genesis_file(paths.genesis_file)
        self.keys = keys or load_validator_keys(paths.key_file)
        self.chain_id = self.genesis.chain_id
        keys_by_index = [v.public_key for v in self.genesis.validators]
        if self.keys.public_key not in keys_by_index:
            raise StartupError(
                f"validator key {self.keys.public_key.hex()} is not in the genesis validator set "
                f"of chain {self.genesis.chain_name}"
            )
        self.index = keys_by_index.index(self.keys.public_key)
        self.name = self.genesis.validators[self.index].name
        self.validator_keys = keys_by_index
        self.index_of = {k: i for i, k in enumerate(keys_by_index)}
        self.market_by_id = {m.market_id: m for m in self.genesis.markets}
        self.validator_set = frozenset(keys_by_index)
        self.log = log.bind(node=self.name)

        self.metrics = NodeMetrics()
        self.worker = SqliteWorker()
        self.mempool = Mempool(cfg.consensus.mempool_max_txs, cfg.consensus.mempool_max_bytes)
        self.app = ChainApp(
            self.chain_id,
            self.mempool,
            self.genesis.timing.max_clock_drift_ms,
            cfg.consensus.block_build_max_txs,
            lookup=lambda h: self.replica.tree.get(h),
        )
        self.replica = Replica(
            self.genesis, self.index, self.keys.signer, self.keys.vrf_seed, self.app
        )
        self.safety_store = SafetyStore(paths.data_dir)
        self.journal: MempoolJournal | None = None
        self.pending_store = PendingBlockStore(paths.data_dir)
        self.block_store: BlockStore | None = None
        self.exchange: Exchange | None = None
        self.hub = StreamHub(self._snapshot)
        self.host: Host | None = None

        self._events_send, self._events_recv = trio.open_memory_channel[Event](EVENT_QUEUE)
        self._commits_send, self._commits_recv = trio.open_memory_channel[CommittedBlock](math.inf)
        self._timers: dict[TimerKind, tuple[int, int]] = {}
        self._timers_changed = trio.Event()
        self._decoded: OrderedDict[int, tuple[bytes, Any]] = OrderedDict()
        self._decoded_txs: OrderedDict[int, tuple[bytes, tuple[SignedTx, bytes]]] = OrderedDict()
        self._waiters: dict[bytes, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._singles_send, self._singles_recv = trio.open_memory_channel[
            tuple[bytes, list[Admission], trio.Event]
        ](MAX_COALESCED_SUBMISSIONS)
        self._results: OrderedDict[bytes, tuple[int, int, int, int, int]] = OrderedDict()
        """tx id → (status, height, index in block, reason, action index), compact: recent
        outcomes for the RPC and for recognising included transactions."""
        self._fills: OrderedDict[bytes, list[dict[str, Any]]] = OrderedDict()
        """Fills of committed transactions someone is waiting for (wait=true), until read."""
        self._recent_blocks: OrderedDict[int, dict[str, Any]] = OrderedDict()
        """height → RPC document of the newest committed blocks: the contiguous top of the block
        store (``RECENT_BLOCKS`` of them)."""
        self._expirations: OrderedDict[bytes, tuple[int, int, int, int, int]] = OrderedDict()
        """Expired transactions' results, as in ``_results`` but kept longer (no block has them,
        so the ledger cannot answer for them)."""
        self._arrivals: dict[bytes, float] = {}
        self._snapshots: dict[str, Any] = {}
        self.state_root = b""
        self.applied_height = 0
        self.txs_committed = 0
        self.started_at = time.monotonic()
        self.rpc_port: int | None = None
        self.metrics_port: int | None = None
        self.p2p_port: int | None = None

    # ================================================================== lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._open_stores()
        try:
            await self._handshake()
            self.host = Host(
                HostConfig.from_genesis(
                    self.genesis,
                    own_key=self.keys.public_key,
                    observers=self.cfg.p2p.observers,
                    listen_host=self.cfg.p2p.listen_address.host,
                    listen_port=self.cfg.p2p.listen_address.port,
                ),
                self.keys.signer,
                validator=self._validate_gossip,
                on_session=self._on_session,
            )
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.p2p_port = await nursery.start(self.host.run)
                nursery.start_soon(self._inbound_loop)
                nursery.start_soon(self._committer_loop)
                nursery.start_soon(self._timer_loop)
                nursery.start_soon(self._consensus_loop)
                nursery.start_soon(self._replay_journal)
                nursery.start_soon(self._mempool_sync_loop)
                nursery.start_soon(self._admission_loop)
                self.rpc_port = await nursery.start(self._serve_rpc)
                if self.cfg.metrics.enabled:
                    self.metrics_port = await nursery.start(self._serve_metrics)
                self.log.info(
                    "node_started",
                    index=self.index,
                    chain=self.chain_id.hex()[:16],
                    height=self.applied_height,
                    p2p=self.p2p_port,
                    rpc=self.rpc_port,
                )
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                await self._close_stores()

    async def _open_stores(self) -> None:
        self.paths.data_dir.mkdir(parents=True, exist_ok=True)
        self.block_store = await self.worker.run(BlockStore, self.paths.data_dir / "blocks.sqlite")
        self.exchange = await self.worker.run(
            Exchange.open, self.paths.data_dir / "ledger.sqlite", self.genesis, time.monotonic
        )
        self.journal = MempoolJournal(self.paths.data_dir, self.worker.run)

    async def _replay_journal(self) -> None:
        """Re-admit and re-gossip what this node acknowledged before it last stopped."""
        assert self.journal is not None and self.host is not None
        raws = self.journal.read()
        if not raws:
            return
        with trio.move_on_after(JOURNAL_REPLAY_PEER_WAIT_S):
            await self.host.wait_connected(
                [k for k in self.validator_keys if k != self.keys.public_key]
            )
        # Catch up first: what this node acknowledged may have been included while it was down,
        # and only the applied blocks say so. Until a certificate has come from the network, the
        # highest one known is this node's own from before it stopped, and says nothing about
        # how far behind it is (replaying then would also take the CPU the catch-up needs).
        pacemaker = self.replica.pacemaker
        stored_qc = pacemaker.high_qc
        with trio.move_on_after(JOURNAL_REPLAY_CATCH_UP_WAIT_S):
            while (
                pacemaker.high_qc == stored_qc or self.applied_height + 1 < pacemaker.high_qc.height
            ):
                await trio.sleep(0.1)
        ex = self.exchange
        assert ex is not None
        readmitted = 0
        for first in range(0, len(raws), JOURNAL_REPLAY_CHUNK):
            # Most of the journal was included while the node was down: the ledger says which
            # (REPLAYED), and only the rest has its signature checked again and is re-admitted.
            candidates: list[tuple[SignedTx, bytes, bytes]] = []
            for raw in raws[first : first + JOURNAL_REPLAY_CHUNK]:
                try:
                    tx, tx_id = decode_tx_with_id(raw, self.chain_id)
                except CodecError:
                    continue
                if self._included(tx_id) or tx_id in self.mempool:
                    continue
                reason, _ = check_static(
                    tx.body, self.applied_height + 1, self.market_by_id, self.validator_set
                )
                if reason == Reason.OK:
                    candidates.append((tx, tx_id, raw))
                elif reason == Reason.EXPIRED:
                    self._expired(tx_id, self.applied_height + 1)
            included = await self.worker.run(
                lambda c=candidates: [ex.check_tx(t[0])[0] == Reason.REPLAYED for t in c]
            )
            batch = []
            for (tx, tx_id, raw), done in zip(candidates, included, strict=True):
                if done:
                    continue
                try:
                    tx.verify(self.chain_id)
                except SignatureError:
                    self.log.warning("journal_record_refused", tx_id=tx_id.hex()[:16])
                    continue
                batch.append((tx, tx_id, raw))
            results = await self._admit_batch(batch, gossip=True) if batch else []
            readmitted += sum(1 for r, _ in results if r == Reason.OK)
        self.log.info("journal_replayed", records=len(raws), readmitted=readmitted)
        while self.journal.flushing:
            await trio.sleep(0.01)
        self.journal.compact(p.raw for p in self.mempool.take(10**9, 10**12, 0))

    async def _mempool_sync_loop(self) -> None:
        """Make sure the sequencer gets every pending transaction.

        Gossip reaches the peers connected at the moment; a peer that (re)connects later —
        a restarted sequencer with an empty mempool — would never see what was sent before.
        So each new session gets this node's whole mempool (as Tendermint's mempool reactor
        does), and transactions pending for long are re-sent to the current sequencer.
        """
        host = self.host
        assert host is not None
        known: set[bytes] = set()
        last_resend = time.monotonic()
        while True:
            await trio.sleep(MEMPOOL_SYNC_INTERVAL_S)
            peers = set(host.connected_peers())
            for peer in sorted(peers - known):
                for p in self.mempool.take(10**9, 10**12, 0):
                    if not host.send(peer, Kind.TX, p.raw):
                        break  # its queue is full: the resend below covers the rest
            known = peers
            if time.monotonic() - last_resend < MEMPOOL_RESEND_AFTER_S:
                continue
            last_resend = time.monotonic()
            leader = self._leader()
            if leader is None or leader == self.index:
                continue
            old = now_ms() - int(MEMPOOL_RESEND_AFTER_S * 1000)
            for p in self.mempool.take(10**9, 10**12, self.applied_height + 1):
                if p.arrival_ms <= old and not host.send(
                    self.validator_keys[leader], Kind.TX, p.raw
                ):
                    break

    async def _close_stores(self) -> None:
        self.pending_store.close()
        self.safety_store.close()
        if self.journal is not None:
            self.journal.close()
        if self.exchange is not None:
            await self.worker.run(self.exchange.close)
        if self.block_store is not None:
            await self.worker.run(self.block_store.close)
        self.log.info("node_stopped", height=self.applied_height)

    # ================================================================== start-up handshake

    async def _handshake(self) -> None:
        """Reconcile block store, ledger and safety state, or refuse to start."""
        store, ex = self.block_store, self.exchange
        assert store is not None and ex is not None
        tip, ledger_height = store.tip_height, ex.height
        self.log.info("handshake", block_store_height=tip, ledger_height=ledger_height)
        if ledger_height > tip:
            raise StartupError(
                f"the ledger is at height {ledger_height} but the block store only reaches {tip}: "
                f"the ledger cannot be ahead of the blocks it was built from. Restore the data "
                f"directory {self.paths.data_dir} from one backup, or remove it to resync."
            )
        recent = await self.worker.run(views.state_roots, ex, max(1, ledger_height - 4096), tip)
        for h, root in recent:
            self.app.roots[h] = root
        self.app.applied_height, self.app.applied_root = ledger_height, ex.state_root
        self.app.cleared_height = tip  # replayed below: no proposal needs to skip their txs
        if ledger_height:
            self.app.roots[ledger_height] = ex.state_root
        self.applied_height, self.state_root = ledger_height, ex.state_root
        for h in range(ledger_height + 1, tip + 1):
            stored = await self.worker.run(store.get, h)
            assert stored is not None
            block = decode(stored.block, Block, max_bytes=limits.MAX_MESSAGE_BYTES)
            ids = tuple(tx.tx_id(self.chain_id) for tx in block.txs)
            await self._apply([(block, stored.block_hash, ids)])
        if tip > ledger_height:
            self.log.info("handshake_replayed", blocks=tip - ledger_height, height=tip)
        raw_safety = self.safety_store.load()
        safety = (
            decode(raw_safety, SafetyState, max_bytes=limits.MAX_MESSAGE_BYTES)
            if raw_safety is not None
            else None
        )
        committed = await self._recent_committed(tip)
        pending = tuple(_decoded_block(raw) for raw in self.pending_store.load(above=tip))
        self.pending_store.prune(tip)
        # The replica takes the recent blocks one at a time; each one's state-root claim is
        # checked as it is decoded (a StartupError stops the node before any effect).
        self._perform(self.replica.handle(Start(now_ms(), safety, committed, pending)))

    def _check_root_claim(self, block: Block) -> None:
        """A stored block's state-root claim must match what this node's ledger computed."""
        mine = self.app.roots.get(block.state_height)
        if block.state_height and mine is not None and mine != block.state_root:
            raise StartupError(
                f"state root mismatch at height {block.state_height}: block {block.height} "
                f"says {block.state_root.hex()}, this ledger computed {mine.hex()}. The "
                f"ledger diverged; remove {self.paths.data_dir}/ledger.sqlite to rebuild it."
            )

    async def _recent_committed(self, tip: int) -> Iterator[CommittedBlock]:
        """The last epochs' committed blocks for the replica's ``Start``, decoded one at a time
        as the replica takes them: it keeps only the newest few whole, so decoding them all
        first would make a restart's memory peak several hundred full blocks high."""
        store = self.block_store
        assert store is not None
        want = max(election_history_blocks(self.genesis.timing.epoch_views), RESTART_ROOT_CHECKS)
        rows: deque[StoredBlock] = deque()
        h = max(1, tip - want + 1)
        while h <= tip:
            got = await self.worker.run(store.range, h, tip)
            if not got:
                break
            rows.extend(got)
            h = got[-1].height + 1

        def decoded() -> Iterator[CommittedBlock]:
            while rows:
                stored = rows.popleft()
                block = _decoded_block(stored.block)
                self._check_root_claim(block)
                qc = decode(stored.certificate, QuorumCert, max_bytes=limits.MAX_MESSAGE_BYTES)
                yield CommittedBlock(block, qc)

        return decoded()

    # ================================================================== consensus driver

    async def _consensus_loop(self) -> None:
        async for event in self._events_recv:
            self._perform(self.replica.handle(event))
            self.metrics.view.set(self.replica.view)

    def _perform(self, effects: list[Effect]) -> None:
        """Carry out effects in order; a safety write completes before the next effect."""
        host = self.host
        for eff in effects:
            if isinstance(eff, PersistSafety):
                self.safety_store.save(eff.state.encode())
            elif isinstance(eff, Send):
                if eff.to == self.index:
                    self._post(MessageReceived(self.index, eff.message, now_ms()))
                elif host is not None:
                    self._send_direct(self.validator_keys[eff.to], eff.message)
            elif isinstance(eff, Broadcast):
                if host is not None:
                    host.broadcast(Kind.CONSENSUS, eff.message.encode())
            elif isinstance(eff, SetTimer):
                self._timers[eff.kind] = (eff.view, eff.at_ms)
                self._timers_changed.set()
            elif isinstance(eff, PersistBlock):
                b = eff.block
                self.pending_store.save(b.height, b.block_hash(self.chain_id), b.encode())
            elif isinstance(eff, Commit):
                self.app.note_final(eff.committed.block, eff.committed.qc.block_hash)
                self._commits_send.send_nowait(eff.committed)
            else:  # pragma: no cover - typed union
                raise TypeError(f"unknown effect {eff!r}")

    def _send_direct(self, peer: bytes, message: Any) -> None:
        self._send_raw(peer, type(message).__name__, message.encode())

    def _send_raw(self, peer: bytes, kind: str, payload: bytes) -> None:
        """Send one encoded consensus message to one peer; one that cannot fit a frame is
        dropped with a log line (the peer asks again, for less), never allowed to stop the
        node."""
        assert self.host is not None
        try:
            self.host.send(peer, Kind.DIRECT, payload)
        except ValueError as e:
            self.log.warning(
                "direct_message_dropped",
                peer=peer.hex()[:8],
                kind=kind,
                bytes=len(payload),
                reason=str(e),
            )

    def _on_session(self, peer: bytes) -> None:
        index = self.index_of.get(peer)
        if index is not None:  # observers take no part in consensus
            self._post(PeerConnected(index, now_ms()))

    def _post(self, event: Event) -> None:
        try:
            self._events_send.send_nowait(event)
        except trio.WouldBlock:
            self.log.warning("event_queue_full", dropped=type(event).__name__)

    async def _timer_loop(self) -> None:
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
                self._post(TimerFired(kind, view, now_ms()))

    # ================================================================== network input

    def _decode_consensus(self, payload: bytes) -> Any:
        cached = self._decoded.pop(id(payload), None)
        if cached is not None and cached[0] is payload:
            return cached[1]
        return _decode_message(payload)

    def _validate_gossip(self, peer: bytes, kind: int, payload: bytes) -> Verdict:
        """The net layer's validator: decide before anything is delivered or forwarded."""
        if kind == Kind.TX:
            return self._validate_tx(payload)
        try:
            msg = _decode_message(payload)
        except CodecError as e:
            self.log.info("peer_message_rejected", peer=peer.hex()[:8], reason=str(e))
            return Verdict.REJECT
        _remember(self._decoded, payload, msg, DECODED_AHEAD)
        return Verdict.ACCEPT

    def _validate_tx(self, payload: bytes) -> Verdict:
        try:
            tx, tx_id = decode_and_verify_tx(payload, self.chain_id)
        except (CodecError, SignatureError):
            return Verdict.REJECT
        if tx_id in self.mempool or self._included(tx_id):
            return Verdict.IGNORE  # pending, or already included: nothing new to forward
        reason, _ = check_static(
            tx.body, self.applied_height + 1, self.market_by_id, self.validator_set
        )
        if reason in (Reason.EXPIRED, Reason.EXPIRY_TOO_FAR):
            return Verdict.IGNORE
        if reason:
            return Verdict.REJECT
        _remember(self._decoded_txs, payload, (tx, tx_id), DECODED_TXS_AHEAD)
        return Verdict.ACCEPT

    async def _inbound_loop(self) -> None:
        assert self.host is not None
        async for batch in self.host.inbound:
            txs: list[tuple[SignedTx, bytes, bytes]] = []
            for peer, kind, payload in batch:
                if kind == Kind.TX:
                    cached = self._decoded_txs.pop(id(payload), None)
                    if cached is not None and cached[0] is payload:
                        tx, tx_id = cached[1]
                    else:  # the validator checked it, but its decoded copy is gone
                        tx, tx_id = decode_tx_with_id(payload, self.chain_id)
                    txs.append((tx, tx_id, payload))
                    continue
                sender = self.index_of.get(peer)
                if sender is None:
                    continue  # observers send no consensus traffic
                try:
                    msg = self._decode_consensus(payload)
                except CodecError:
                    continue
                if self._nursery is not None:
                    # Committed blocks are served from the block store, which holds them all
                    # as encoded; the replica keeps only the newest few whole in memory.
                    if type(msg) is CommittedRequest:
                        self._nursery.start_soon(self._serve_committed, peer, msg)
                        continue
                    if type(msg) is BlockRequest and self._served_from_store(msg.block_hash):
                        self._nursery.start_soon(self._serve_blocks, peer, msg)
                        continue
                self._post(MessageReceived(sender, msg, now_ms()))
            if txs:
                await self._admit_batch(txs, gossip=False, stateful=False)

    async def _admit_batch(
        self, txs: list[tuple[SignedTx, bytes, bytes]], gossip: bool, stateful: bool = True
    ) -> list[tuple[Reason | PoolReason, int]]:
        """Stateful checks on the worker (for the RPC), then the mempool.

        Signatures and static rules are already checked. Gossip skips the stateful checks:
        they depend on how far this node has applied, so two nodes could judge one transaction
        differently and leave it in only some mempools, where a sequencer that lacks it would
        never propose it. The block decides, deterministically, and every mempool agrees.
        """
        ex = self.exchange
        assert ex is not None
        fresh = [t for t in txs if t[1] not in self.mempool] if stateful else []
        checks = await self.worker.run(lambda: [ex.check_tx(t[0]) for t in fresh]) if fresh else []
        by_id = {t[1]: c for t, c in zip(fresh, checks, strict=True)}
        out: list[tuple[Reason | PoolReason, int]] = []
        added = 0
        arrival = now_ms()
        for tx, tx_id, raw in txs:
            if self._included(tx_id):
                out.append((Reason.REPLAYED, -1))  # in a committed block already
                continue
            reason, action = by_id.get(tx_id, (Reason.OK, -1))
            if reason in EDGE_DEFERRED:
                reason, action = Reason.OK, -1  # the order may still be pending: the block decides
            if reason == Reason.OK and tx_id not in self.mempool:
                pool = self.mempool.add(PendingTx(tx_id, tx, raw, arrival))
                if pool != PoolReason.OK:
                    out.append((pool, -1))
                    continue
                added += 1
                self.app.note_verified(tx, tx_id)  # every admitted transaction was verified
                self._arrivals[tx_id] = time.monotonic()
                if gossip and self.host is not None:
                    self.host.broadcast(Kind.TX, raw)
            elif reason != Reason.OK:
                self.metrics.rejected.labels(reason=reason.name).inc()
            out.append((reason, action))
        if added:
            if gossip and added > 1 and self.host is not None:
                self.host.flush()
            self.metrics.mempool.set(len(self.mempool))
            self._post(TransactionsAvailable(now_ms()))
        return out

    # ================================================================== commits

    async def _committer_loop(self) -> None:
        store = self.block_store
        assert store is not None
        async for first in self._commits_recv:
            # Every commit already waiting is stored in one transaction (one disk flush): a node
            # catching up commits hundreds of blocks in a burst.
            burst = _drain(first, self._commits_recv, COMMIT_BURST_BLOCKS)
            todo = []
            for committed in burst:
                block = committed.block
                if block.height <= self.applied_height:
                    continue  # already applied before a restart
                block_hash = committed.qc.block_hash
                ids = self.app.note_committed(block, block_hash)
                self.mempool.commit(ids)  # now, not after applying: never proposed again
                todo.append((committed, block_hash, ids))
            if not todo:
                continue
            stored = [
                StoredBlock(c.block.height, h, c.block.view, c.block.encode(), c.qc.encode())
                for c, h, _ in todo
            ]
            await self.worker.run(store.append_many, stored)
            for committed, block_hash, ids in todo:
                block = committed.block
                recent = self._recent_blocks
                recent[block.height] = _block_doc(block, block_hash, committed.qc, ids)
                if len(recent) > RECENT_BLOCKS:
                    recent.popitem(last=False)
                self.pending_store.prune(block.height)
            for chunk in _apply_chunks([(c.block, h, ids) for c, h, ids in todo]):
                await self._apply(chunk)

    async def _apply(self, chunk: list[tuple[Block, bytes, tuple[bytes, ...]]]) -> None:
        """Apply consecutive committed blocks in one worker trip, then publish each result."""
        ex = self.exchange
        assert ex is not None
        keys = self.validator_keys

        def apply() -> list[tuple[BlockResult, dict[str, Any]]]:
            out = []
            for block, _, ids in chunk:
                proposer = keys[block.proposer]
                result = ex.apply_block(block.height, block.timestamp_ms, block.txs, proposer, ids)
                out.append((result, self._stream_snapshots(result)))
            return out

        applied = await self.worker.run(apply)
        for (block, block_hash, ids), (result, snapshots) in zip(chunk, applied, strict=True):
            self.applied_height, self.state_root = block.height, result.state_root
            self.app.note_applied(block.height, result.state_root)
            self._after_commit(block, block_hash, ids, result, snapshots)

    def _after_commit(
        self,
        block: Block,
        block_hash: bytes,
        ids: tuple[bytes, ...],
        result: BlockResult,
        snapshots: dict[str, Any],
    ) -> None:
        self.mempool.applied(ids)  # the results below answer for them from here on
        for tx_id in self.mempool.drop_expired(block.height + 1):
            self._expired(tx_id, block.height + 1)
        journal = self.journal
        if journal is not None and journal.should_compact(len(self.mempool)):
            journal.compact(p.raw for p in self.mempool.take(10**9, 10**12, 0))
        m = self.metrics
        m.height.set(block.height)
        m.commits.inc()
        m.orders.inc(len(block.txs))
        self.txs_committed += len(block.txs)
        m.mempool.set(len(self.mempool))
        now = time.monotonic()
        waited = [t for t in ids if t in self._waiters]
        trades_by_taker: dict[bytes, list[dict[str, Any]]] = {}
        if waited:
            for t in result.trades:
                trades_by_taker.setdefault(t.taker, []).append(
                    views.trade_json(t, self.market_by_id[t.market])
                )
        for tx, tx_id, outcome in zip(block.txs, ids, result.outcomes, strict=True):
            arrived = self._arrivals.pop(tx_id, None)
            if arrived is not None:
                m.commit_latency.observe(now - arrived)
            ok = outcome.reason == Reason.OK
            status = _COMMITTED if ok else _REJECTED
            if outcome.reason == Reason.REPLAYED and tx_id in self._results:
                continue  # a repeat never hides what the transaction did the first time
            self._results[tx_id] = (
                status,
                block.height,
                outcome.index,
                int(outcome.reason),
                outcome.action_index,
            )
            waiter = self._waiters.pop(tx_id, None)
            if waiter is not None:
                self._fills[tx_id] = trades_by_taker.get(tx.body.signer, []) if ok else []
                waiter.set()
        while len(self._fills) > RECENT_FILLS:  # callers that timed out before the commit
            self._fills.popitem(last=False)
        while len(self._results) > RECENT_RESULTS:
            self._results.popitem(last=False)
        self._snapshots.update(snapshots)
        self.hub.publish(
            "blocks",
            {
                "height": block.height,
                "hash": block_hash.hex(),
                "view": block.view,
                "txs": len(block.txs),
                "state_root": result.state_root.hex(),
                "timestamp_ms": block.timestamp_ms,
            },
        )
        hub = self.hub
        for t in result.trades:
            names = [f"trades:{t.market}", f"fills:{t.taker.hex()}", f"fills:{t.maker.hex()}"]
            if not any(hub.wants(n) for n in names):
                continue  # nobody listens: a subscriber starts from a snapshot anyway
            doc = views.trade_json(t, self.market_by_id[t.market])
            for n in dict.fromkeys(names):
                hub.publish(n, doc)
        for name, snap in snapshots.items():
            if name.startswith("book:"):
                self.hub.publish(name, snap)

    def _included(self, tx_id: bytes) -> bool:
        """Whether a committed block holds ``tx_id``: applied (a result), or not yet."""
        return tx_id in self._results or self.mempool.is_included(tx_id)

    def _expired(self, tx_id: bytes, height: int) -> None:
        """Remember that an action this node held expired unincluded (the RPC reports it)."""
        if tx_id in self._results:
            return
        self._results[tx_id] = (_EXPIRED, height, -1, int(Reason.EXPIRED), -1)
        self._expirations[tx_id] = self._results[tx_id]
        while len(self._expirations) > EXPIRED_RESULTS:
            self._expirations.popitem(last=False)
        self._arrivals.pop(tx_id, None)
        waiter = self._waiters.pop(tx_id, None)
        if waiter is not None:
            waiter.set()

    def _stream_snapshots(self, result: BlockResult) -> dict[str, Any]:
        """Book snapshots of the markets this block touched (runs on the worker)."""
        ex = self.exchange
        assert ex is not None
        touched = {t.market for t in result.trades} | set(getattr(ex, "touched_books", ()))
        if not self._snapshots:
            touched = set(self.market_by_id)
        return {
            f"book:{mid}": views.book_json(ex, self.market_by_id[mid], 50)
            for mid in sorted(touched)
        }

    def _snapshot(self, stream: str) -> Any:
        if stream == "blocks":
            return {"height": self.applied_height, "state_root": self.state_root.hex()}
        if stream.startswith("book:"):
            return self._snapshots.get(stream, {"bids": [], "asks": []})
        return []

    # ================================================================== RPC (NodeApi)

    async def submit(self, raw: bytes) -> Admission:
        """One action from the RPC. Concurrent single submissions are coalesced by the
        admission task into one ``submit_many`` (one worker call for the stateful rules, one
        journal flush), so a thousand clients posting one order each cost what one batch of a
        thousand does."""
        slot: list[Admission] = []
        done = trio.Event()
        await self._singles_send.send((raw, slot, done))
        await done.wait()
        return slot[0]

    async def _serve_committed(self, peer: bytes, req: CommittedRequest) -> None:
        """Answer a far-behind peer with committed blocks and their QCs, oldest first, spliced
        from the stored encodings (no decode, no re-encode)."""
        store = self.block_store
        assert store is not None
        first = max(1, req.from_height)
        want = min(req.max_blocks, MAX_SYNC_BLOCKS)
        rows = await self.worker.run(store.range, first, first + want - 1)
        out = [(r.block, r.certificate) for r in _fit_frame(rows, certificates=True)]
        self._send_raw(peer, "CommittedResponse", committed_response_bytes(out))

    def _served_from_store(self, block_hash: bytes) -> bool:
        """Whether a block request is for a block the block store holds (committed and
        stored): those are served from the store, since the replica keeps only the newest
        committed blocks whole. Unknown hashes also go to the store (a block committed long
        ago, pruned from the replica's tree); the replica answers for uncommitted blocks."""
        store = self.block_store
        node = self.replica.tree.get(block_hash)
        if store is None or node is None:
            return store is not None
        return node.committed and node.height <= store.tip_height

    async def _serve_blocks(self, peer: bytes, req: BlockRequest) -> None:
        """Answer a block request from the store: the block, then its ancestors, newest first."""
        store = self.block_store
        assert store is not None
        want = min(req.max_blocks, MAX_SYNC_BLOCKS)
        rows = await self.worker.run(store.chain_to, req.block_hash, want)
        raws = [r.block for r in _fit_frame(rows, certificates=False)]
        self._send_raw(peer, "BlockResponse", block_response_bytes(req.block_hash, raws))

    async def _admission_loop(self) -> None:
        async for first in self._singles_recv:
            batch = _drain(first, self._singles_recv, MAX_COALESCED_SUBMISSIONS)
            answers = await self.submit_many([raw for raw, _, _ in batch])
            for (_, slot, done), answer in zip(batch, answers, strict=True):
                slot.append(answer)
                done.set()

    async def submit_many(self, raws: list[bytes]) -> list[Admission]:
        """Admit transactions from the RPC: signature and static rules here, the stateful
        rules in one worker call, then the mempool and gossip; the accepted ones are journalled
        with one disk flush before any of them is acknowledged."""
        answers: list[Admission | None] = [None] * len(raws)
        batch: list[tuple[SignedTx, bytes, bytes]] = []
        where: list[int] = []
        height = self.applied_height + 1
        for i, raw in enumerate(raws):
            try:
                tx, tx_id = decode_and_verify_tx(raw, self.chain_id)
            except CodecError as e:
                answers[i] = Admission(None, "MALFORMED", int(Reason.MALFORMED), str(e))
                continue
            except SignatureError as e:
                answers[i] = Admission(None, "BAD_SIGNATURE", int(Reason.BAD_SIGNATURE), str(e))
                continue
            if tx_id in self.mempool:
                answers[i] = Admission(tx_id, "OK", 0, "already pending")
                continue
            if tx_id in self._results:
                status = _STATUS_NAMES[self._results[tx_id][0]]
                answers[i] = Admission(tx_id, "REPLAYED", int(Reason.REPLAYED), f"already {status}")
                continue
            if self.mempool.is_included(tx_id):
                answers[i] = Admission(
                    tx_id, "REPLAYED", int(Reason.REPLAYED), "already in a committed block"
                )
                continue
            reason, action = check_static(tx.body, height, self.market_by_id, self.validator_set)
            if reason:
                self.metrics.rejected.labels(reason=reason.name).inc()
                answers[i] = Admission(tx_id, reason.name, int(reason), _action_detail(action))
                continue
            batch.append((tx, tx_id, raw))
            where.append(i)
        if batch:
            verdicts = await self._admit_batch(batch, gossip=True)
            journal = self.journal
            assert journal is not None
            for (_, tx_id, raw), i, (verdict, action) in zip(batch, where, verdicts, strict=True):
                if verdict:
                    answers[i] = Admission(
                        tx_id, verdict.name, int(verdict), _action_detail(action)
                    )
                else:
                    journal.append(raw)
                    answers[i] = Admission(tx_id, "OK", 0)
            await journal.sync()  # durable before acknowledged: a crash cannot lose them
        return [a for a in answers if a is not None]

    async def wait_committed(self, tx_id: bytes, timeout_s: float) -> dict[str, Any] | None:
        if tx_id not in self._results:
            event = self._waiters.setdefault(tx_id, trio.Event())
            with trio.move_on_after(timeout_s):
                await event.wait()
        return self._result(tx_id, self._fills.pop(tx_id, []))

    def _result(self, tx_id: bytes, fills: list[dict[str, Any]] | None = None) -> dict | None:
        r = self._results.get(tx_id) or self._expirations.get(tx_id)
        if r is None:
            return None
        status, height, index, reason, action = r
        return {
            "tx_id": tx_id.hex(),
            "status": _STATUS_NAMES[status],
            "height": height,
            "index": index,
            "reason": Reason(reason).name,
            "code": reason,
            "action_index": action,
            "fills": fills or [],
        }

    def _leader(self) -> int | None:
        try:
            r = self.replica
            tip = r.tree.get(r.pacemaker.high_qc.block_hash)
            return None if tip is None else r.election.leader(r.view, tip)
        except Exception:  # the core may be between epochs; status must not fail
            return None

    def status(self) -> dict[str, Any]:
        r = self.replica
        leader = self._leader()
        return {
            "chain_id": self.chain_id.hex(),
            "chain_name": self.genesis.chain_name,
            "node": self.name,
            "validator_index": self.index,
            "height": self.applied_height,
            "committed_height": r.committed_height,
            "view": r.view,
            "epoch": r.view // self.genesis.timing.epoch_views,
            "sequencer": leader,
            "sequencer_name": None if leader is None else self.genesis.validators[leader].name,
            "peers": len(self.host.connected_peers()) if self.host else 0,
            "state_root": self.state_root.hex(),
            "state_height": self.applied_height,
            "mempool": len(self.mempool),
            "txs_committed": self.txs_committed,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
        }

    async def markets(self) -> list[dict[str, Any]]:
        ex = self.exchange
        assert ex is not None
        return await self.worker.run(views.markets_json, ex, self.genesis)

    async def book(self, market: int, depth: int) -> dict[str, Any] | None:
        m = self.market_by_id.get(market)
        if m is None:
            return None
        ex = self.exchange
        assert ex is not None
        return await self.worker.run(views.book_json, ex, m, depth)

    async def trades(self, market: int, limit: int) -> list[dict[str, Any]] | None:
        m = self.market_by_id.get(market)
        if m is None:
            return None
        ex = self.exchange
        assert ex is not None
        return await self.worker.run(views.trades_json, ex, m, limit)

    async def account(self, owner: bytes) -> dict[str, Any] | None:
        ex = self.exchange
        assert ex is not None
        return await self.worker.run(views.account_json, ex, self.genesis, owner)

    async def block(self, height: int) -> dict[str, Any] | None:
        doc = self._recent_blocks.get(height)
        if doc is not None:
            return doc
        store = self.block_store
        assert store is not None
        stored = await self.worker.run(store.get, height)
        return None if stored is None else self._block_json(stored)

    async def blocks(self, first: int, last: int) -> list[dict[str, Any]]:
        recent = self._recent_blocks
        if recent and next(iter(recent)) <= first:
            # The newest blocks, which pollers ask for, come from memory: the cache is the
            # contiguous top of the block store.
            top = next(reversed(recent))
            return [recent[h] for h in range(first, min(last, top) + 1)]
        store = self.block_store
        assert store is not None
        return [self._block_json(s) for s in await self.worker.run(store.range, first, last)]

    def _block_json(self, stored: StoredBlock) -> dict[str, Any]:
        block = decode(stored.block, Block, max_bytes=limits.MAX_MESSAGE_BYTES)
        qc = decode(stored.certificate, QuorumCert, max_bytes=limits.MAX_MESSAGE_BYTES)
        ids = [tx.tx_id(self.chain_id) for tx in block.txs]
        return _block_doc(block, stored.block_hash, qc, ids)

    async def action(self, tx_id: bytes) -> dict[str, Any] | None:
        if tx_id in self.mempool:
            return {"tx_id": tx_id.hex(), "status": "pending"}
        result = self._result(tx_id)
        if result is not None:
            return result
        ex = self.exchange
        assert ex is not None
        outcome = await self.worker.run(ex.tx_status, tx_id)
        if outcome is None:
            return None
        status = "committed" if outcome.reason == Reason.OK else "rejected"
        return {"tx_id": tx_id.hex(), "status": status, **views.outcome_json(outcome)}

    async def actions(self, tx_ids: list[bytes]) -> list[dict[str, Any] | None]:
        return [await self.action(t) for t in tx_ids]

    async def state_roots(self, first: int, last: int) -> list[dict[str, Any]]:
        ex = self.exchange
        assert ex is not None
        rows = await self.worker.run(views.state_roots, ex, first, last)
        return [{"height": h, "state_root": r.hex()} for h, r in rows]

    async def ledger_totals(self) -> dict[str, Any]:
        ex = self.exchange
        assert ex is not None
        return await self.worker.run(views.ledger_totals_json, ex, self.genesis)

    def admin_status(self) -> dict[str, Any]:
        host = self.host
        return {
            **self.status(),
            "replica": self.replica.status(),
            "refused_blocks": dict(self.app.refused),
            "rejected_messages": dict(getattr(self.replica, "rejected", {})),
            "net": host.statistics() if host else {},
            "peers": [p.hex() for p in host.connected_peers()] if host else [],
            "worker_calls": self.worker.calls,
            "safety_writes": self.safety_store.writes,
        }

    # ================================================================== servers

    async def _serve_rpc(self, *, task_status: trio.TaskStatus[int]) -> None:
        rpc = self.cfg.rpc
        limits_ = RpcLimits(rpc.max_body_bytes, rpc.client_requests_per_s, rpc.client_burst)
        await self._serve(build_rpc_app(self, limits_), rpc.listen_address, task_status)

    async def _serve_metrics(self, *, task_status: trio.TaskStatus[int]) -> None:
        async def metrics(request: Request) -> Response:
            return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

        app = Starlette(routes=[Route("/metrics", metrics)])
        await self._serve(app, self.cfg.metrics.listen_address, task_status)

    async def _serve(self, app: Any, address: Any, task_status: trio.TaskStatus[int]) -> None:
        config = HypercornConfig()
        config.bind = [f"{address.host}:{address.port}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1.0

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(serve, app, config, shutdown_trigger=trio.sleep_forever)
            )
            task_status.started(int(binds[0].rsplit(":", 1)[1]))


_PROPOSAL_HEAD = b"\x84\x18\x26"  # array of 4, then type tag 38
assert Proposal.WIRE_TAG == 38


def _decoded_block(raw: bytes) -> Block:
    """A block this node stored, decoded; it keeps ``raw`` as its encoding, so hashing it
    re-encodes nothing."""
    block = decode(raw, Block, max_bytes=limits.MAX_MESSAGE_BYTES)
    remember_encoding(block, raw)
    return block


def _block_doc(
    block: Block, block_hash: bytes, qc: QuorumCert, tx_ids: Iterable[bytes]
) -> dict[str, Any]:
    """A committed block as the RPC shows it."""
    return {
        "height": block.height,
        "hash": block_hash.hex(),
        "view": block.view,
        "epoch": block.epoch,
        "proposer": block.proposer,
        "timestamp_ms": block.timestamp_ms,
        "parent_hash": block.parent_hash.hex(),
        "state_height": block.state_height,
        "state_root": block.state_root.hex(),
        "tx_ids": [t.hex() for t in tx_ids],
        "tickets": len(block.tickets),
        "qc_view": qc.view,
        "qc_signers": list(qc.signers),
    }


def _drain(first: T, channel: trio.MemoryReceiveChannel[T], limit: int) -> list[T]:
    """``first`` and what else ``channel`` holds right now, at most ``limit`` in all."""
    out = [first]
    while len(out) < limit:
        try:
            out.append(channel.receive_nowait())
        except trio.WouldBlock:
            break
    return out


def _apply_chunks(
    blocks: list[tuple[Block, bytes, tuple[bytes, ...]]],
) -> Iterator[list[tuple[Block, bytes, tuple[bytes, ...]]]]:
    """Consecutive blocks in runs of about ``APPLY_CHUNK_TXS`` transactions (at least one block
    each): a node catching up applies a run per worker trip, not a block."""
    chunk: list[tuple[Block, bytes, tuple[bytes, ...]]] = []
    txs = 0
    for item in blocks:
        chunk.append(item)
        txs += len(item[0].txs)
        if txs >= APPLY_CHUNK_TXS:
            yield chunk
            chunk, txs = [], 0
    if chunk:
        yield chunk


def _fit_frame(rows: list[StoredBlock], certificates: bool) -> list[StoredBlock]:
    """The first stored blocks whose encodings fit one sync response (at least one)."""
    out: list[StoredBlock] = []
    size = 0
    for row in rows:
        size += len(row.block) + (len(row.certificate) if certificates else 0)
        if out and size > SYNC_FRAME_BYTES:
            break
        out.append(row)
    return out


def _remember(cache: OrderedDict[int, Any], payload: bytes, decoded: Any, bound: int) -> None:
    """Hand what the gossip validator decoded to the inbound loop, keyed by the payload's
    identity (checked when taken: the entry holds the payload, so its id is not reused)."""
    cache[id(payload)] = (payload, decoded)
    while len(cache) > bound:
        cache.popitem(last=False)


def _decode_message(payload: bytes) -> Any:
    """Strictly decode a consensus message; remember the encodings of the blocks it carries
    (slices of ``payload``), which the node hashes and stores."""
    msg = decode(payload, *CONSENSUS_MESSAGES, max_bytes=MAX_CONSENSUS_MESSAGE_BYTES)
    kind = type(msg)
    if kind is Proposal:
        _remember_block_bytes(msg, payload)
    elif kind is BlockResponse or kind is CommittedResponse:
        blocks = msg.blocks if kind is BlockResponse else [c.block for c in msg.committed]
        for block, raw in zip(blocks, sync_block_bytes(msg, payload), strict=True):
            remember_encoding(block, raw)
    return msg


def _remember_block_bytes(p: Proposal, payload: bytes) -> None:
    """A strictly decoded proposal's block is a slice of its bytes: [38, block, tc, sig].

    Remembering it spares the block hash, the proposer's signature check and the block
    store three re-encodings of a block that can be megabytes."""
    tc_len = 1 if p.last_tc is None else len(p.last_tc.encode())
    if payload[:3] != _PROPOSAL_HEAD:
        return
    raw = payload[3 : len(payload) - 66 - tc_len]
    if raw and raw[0] == 0x80 + 1 + len(Block._WIRE_FIELDS):
        remember_encoding(p.block, bytes(raw))


def _action_detail(action: int) -> str:
    return f"action {action} of the batch" if action >= 0 else ""
