"""The committer: committed blocks stored, applied by the exchange, and their results published.

Theory of operation. One task takes the replica's committed blocks, in height order, from the
consensus driver's channel. Every commit already waiting is stored in one block-store
transaction (one disk flush) *before* the exchange applies any of them, so the ledger can always
be rebuilt from the block store; they are then applied on the SQLite worker in runs of about
``APPLY_CHUNK_TXS`` transactions per trip. After each block this module does the bookkeeping
that depends on its results: the mempool (included at commit, applied after), the state-root
history the replica's votes are checked against, metrics, the RPC's per-transaction results and
``wait=true`` waiters, the newest blocks' RPC documents, and the WebSocket streams.

The seam is the applied state: the applied height and root, the transaction results, waiters
and fills, the newest block documents and the stream snapshots change only here, after a block
is applied. Other parts read them (admission asks whether a transaction is included, serving
answers from the results and documents) but never write them, except to report an expiry or
an admission time (:meth:`Committer.expired`, :meth:`Committer.note_arrival`), which are
results too.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import trio
from lockstep.consensus.messages import Block, QuorumCert
from lockstep.consensus.sync import CommittedBlock

from . import views
from .block_store import BlockStore, StoredBlock
from .chain_app import ChainApp
from .context import NodeContext, drain
from .exchange.events import OrderEvent
from .exchange.executor import BlockResult, Exchange
from .exchange.mempool_rules import Reason
from .mempool import Mempool
from .mempool_journal import MempoolJournal
from .metrics import NodeMetrics
from .pending_store import PendingBlockStore
from .streams import STREAM_NAME, StreamError, StreamHub, Subscriber
from .worker import SqliteWorker

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
COMMIT_BURST_BLOCKS = 256
"""Committed blocks stored with one disk flush, at most (a catch-up commits them in bursts)."""
SNAPSHOT_READS = 20
"""Reads of an ``orders:`` snapshot before the subscription is refused: a read is retried only
when it lands between a block's application and its publication (microseconds of each block
interval), so a second read almost always counts."""
APPLY_CHUNK_TXS = 1_000
"""Transactions applied per worker trip at most, in whole blocks (~40 ms): results of the first
block of a run wait for the whole run, so it stays short."""

COMMITTED, REJECTED, EXPIRED = 0, 1, 2
STATUS_NAMES = ("committed", "rejected", "expired")

ApplyItem = tuple[Block, bytes, tuple[bytes, ...]]
"""A committed block, its hash and its transactions' ids, ready to apply."""


class Committer:
    """Stores, applies and publishes committed blocks; holds what their application decided."""

    def __init__(
        self,
        ctx: NodeContext,
        worker: SqliteWorker,
        mempool: Mempool,
        app: ChainApp,
        metrics: NodeMetrics,
        block_store: BlockStore,
        exchange: Exchange,
        journal: MempoolJournal,
        pending_store: PendingBlockStore,
        commits: trio.MemoryReceiveChannel[CommittedBlock],
    ) -> None:
        self.ctx = ctx
        self.worker = worker
        self.mempool = mempool
        self.app = app
        self.metrics = metrics
        self.block_store = block_store
        self.exchange = exchange
        self.journal = journal
        self.pending_store = pending_store
        self._commits = commits
        self.hub = StreamHub(self._snapshot)
        self._results: OrderedDict[bytes, tuple[int, int, int, int, int]] = OrderedDict()
        """tx id → (status, height, index in block, reason, action index), compact: recent
        outcomes for the RPC and for recognising included transactions."""
        self._waiters: dict[bytes, trio.Event] = {}
        self._fills: OrderedDict[bytes, list[dict[str, Any]]] = OrderedDict()
        """Fills of committed transactions someone is waiting for (wait=true), until read."""
        self.recent_blocks: OrderedDict[int, dict[str, Any]] = OrderedDict()
        """height → RPC document of the newest committed blocks: the contiguous top of the block
        store (``RECENT_BLOCKS`` of them). Read by serving, written only here."""
        self._expirations: OrderedDict[bytes, tuple[int, int, int, int, int]] = OrderedDict()
        """Expired transactions' results, as in ``_results`` but kept longer (no block has them,
        so the ledger cannot answer for them)."""
        self._arrivals: dict[bytes, float] = {}
        self._snapshots: dict[str, Any] = {}
        self.state_root = b""
        self.applied_height = 0
        self.txs_committed = 0

    def resume_from(self, height: int, state_root: bytes) -> None:
        """Start from the ledger as the start-up handshake found it."""
        self.applied_height, self.state_root = height, state_root

    # ------------------------------------------------------------------ committing

    async def run(self) -> None:
        """The committer loop: store each burst of commits, then apply it."""
        store = self.block_store
        async for first in self._commits:
            # Every commit already waiting is stored in one transaction (one disk flush): a node
            # catching up commits hundreds of blocks in a burst.
            burst = drain(first, self._commits, COMMIT_BURST_BLOCKS)
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
                recent = self.recent_blocks
                recent[block.height] = block_doc(block, block_hash, committed.qc, ids)
                if len(recent) > RECENT_BLOCKS:
                    recent.popitem(last=False)
                self.pending_store.prune(block.height)
            for chunk in _apply_chunks([(c.block, h, ids) for c, h, ids in todo]):
                await self.apply(chunk)

    async def apply(self, chunk: list[ApplyItem]) -> None:
        """Apply consecutive committed blocks in one worker trip, then publish each result."""
        ex = self.exchange
        keys = self.ctx.validator_keys

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
            self.expired(tx_id, block.height + 1)
        journal = self.journal
        if journal.should_compact(len(self.mempool)):
            journal.compact(p.raw for p in self.mempool.take(10**9, 10**12, 0))
        m = self.metrics
        m.height.set(block.height)
        m.commits.inc()
        m.orders.inc(len(block.txs))
        self.txs_committed += len(block.txs)
        m.mempool.set(len(self.mempool))
        now = time.monotonic()
        market_by_id = self.ctx.market_by_id
        waited = [t for t in ids if t in self._waiters]
        trades_by_taker: dict[bytes, list[dict[str, Any]]] = {}
        if waited:
            for t in result.trades:
                trades_by_taker.setdefault(t.taker, []).append(
                    views.trade_json(t, market_by_id[t.market])
                )
        for tx, tx_id, outcome in zip(block.txs, ids, result.outcomes, strict=True):
            arrived = self._arrivals.pop(tx_id, None)
            if arrived is not None:
                m.commit_latency.observe(now - arrived)
            ok = outcome.reason == Reason.OK
            status = COMMITTED if ok else REJECTED
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
            doc = views.trade_json(t, market_by_id[t.market])
            for n in dict.fromkeys(names):
                hub.publish(n, doc)
        for name, snap in snapshots.items():
            if name.startswith("book:"):
                self.hub.publish(name, snap)
        self._publish_orders(block.height, result)

    # ------------------------------------------------------------------ results

    def included(self, tx_id: bytes) -> bool:
        """Whether a committed block holds ``tx_id``: applied (a result), or not yet."""
        return tx_id in self._results or self.mempool.is_included(tx_id)

    def status_name(self, tx_id: bytes) -> str | None:
        """The status name (committed, rejected, expired) of a recent result, if any."""
        r = self._results.get(tx_id)
        return None if r is None else STATUS_NAMES[r[0]]

    def note_arrival(self, tx_id: bytes) -> None:
        """A transaction entered the mempool now: its commit latency is measured from here."""
        self._arrivals[tx_id] = time.monotonic()

    def expired(self, tx_id: bytes, height: int) -> None:
        """Remember that an action this node held expired unincluded (the RPC reports it)."""
        if tx_id in self._results:
            return
        self._results[tx_id] = (EXPIRED, height, -1, int(Reason.EXPIRED), -1)
        self._expirations[tx_id] = self._results[tx_id]
        while len(self._expirations) > EXPIRED_RESULTS:
            self._expirations.popitem(last=False)
        self._arrivals.pop(tx_id, None)
        waiter = self._waiters.pop(tx_id, None)
        if waiter is not None:
            waiter.set()

    async def wait_committed(self, tx_id: bytes, timeout_s: float) -> dict[str, Any] | None:
        """The result of ``tx_id`` once it has one (with its fills), or None after the wait."""
        if tx_id not in self._results:
            event = self._waiters.setdefault(tx_id, trio.Event())
            with trio.move_on_after(timeout_s):
                await event.wait()
        return self.result(tx_id, self._fills.pop(tx_id, []))

    def result(self, tx_id: bytes, fills: list[dict[str, Any]] | None = None) -> dict | None:
        """A recent result as the RPC shows it, or None if this node holds none in memory."""
        r = self._results.get(tx_id) or self._expirations.get(tx_id)
        if r is None:
            return None
        status, height, index, reason, action = r
        return {
            "tx_id": tx_id.hex(),
            "status": STATUS_NAMES[status],
            "height": height,
            "index": index,
            "reason": Reason(reason).name,
            "code": reason,
            "action_index": action,
            "fills": fills or [],
        }

    # ------------------------------------------------------------------ streams

    def _stream_snapshots(self, result: BlockResult) -> dict[str, Any]:
        """Book snapshots of the markets this block touched (runs on the worker)."""
        ex = self.exchange
        market_by_id = self.ctx.market_by_id
        touched = {t.market for t in result.trades} | set(getattr(ex, "touched_books", ()))
        if not self._snapshots:
            touched = set(market_by_id)
        return {
            f"book:{mid}": views.book_json(ex, market_by_id[mid], 50) for mid in sorted(touched)
        }

    def _publish_orders(self, height: int, result: BlockResult) -> None:
        """Each order event of the block on its owner's ``orders:`` stream, if anyone listens
        (a later subscriber starts from a snapshot read off the ledger)."""
        watched = {bytes.fromhex(n.removeprefix("orders:")): n for n in self.hub.watched("orders:")}
        if not watched:
            return
        market_by_id = self.ctx.market_by_id
        for e in result.events:
            if type(e) is OrderEvent and e.owner in watched:
                doc = views.order_event_json(e, market_by_id[e.market], height)
                self.hub.publish(watched[e.owner], doc)

    async def subscribe(self, stream: str) -> Subscriber:
        """A subscription whose snapshot reflects exactly the events numbered up to its ``seq``.

        The hub snapshots most streams from memory. An ``orders:`` snapshot is the account's
        orders read off the ledger on the worker, which may have applied a block whose events
        are not published yet; such a read would be followed by those events again, so it is
        taken only when its height is the published one, and read again otherwise.
        """
        if not (stream.startswith("orders:") and STREAM_NAME.match(stream)):
            return self.hub.subscribe(stream)
        owner = bytes.fromhex(stream.removeprefix("orders:"))
        ex, markets = self.exchange, self.ctx.market_by_id

        def read() -> tuple[int, dict[str, Any]]:
            return ex.height, {"height": ex.height, **views.orders_json(ex, markets, owner)}

        for _ in range(SNAPSHOT_READS):
            height, doc = await self.worker.run(read)
            if height == self.applied_height:
                break  # and no checkpoint from here to the subscription
        else:
            raise StreamError(f"no consistent snapshot of {stream} in {SNAPSHOT_READS} reads")
        return self.hub.subscribe(stream, lambda: doc)

    def _snapshot(self, stream: str) -> Any:
        if stream == "blocks":
            return {"height": self.applied_height, "state_root": self.state_root.hex()}
        if stream.startswith("book:"):
            return self._snapshots.get(stream, {"bids": [], "asks": []})
        return []


def block_doc(
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


def _apply_chunks(blocks: list[ApplyItem]) -> Iterator[list[ApplyItem]]:
    """Consecutive blocks in runs of about ``APPLY_CHUNK_TXS`` transactions (at least one block
    each): a node catching up applies a run per worker trip, not a block."""
    chunk: list[ApplyItem] = []
    txs = 0
    for item in blocks:
        chunk.append(item)
        txs += len(item[0].txs)
        if txs >= APPLY_CHUNK_TXS:
            yield chunk
            chunk, txs = [], 0
    if chunk:
        yield chunk
