"""Start-up and recovery: opening the stores, and CometBFT's handshake between them.

Theory of operation. A node keeps four things on disk that must agree: the block store (every
committed block with its certificate, written before it is applied), the ledger (the exchange's
SQLite file, committed every few hundred blocks), the safety state (last vote and lock) and the
pending-block log (blocks voted for and not yet committed). At start the handshake compares the
block store's tip with the ledger's height. A ledger ahead of the store cannot be explained and
stops the node with instructions; a ledger behind it is replayed from the store through the
committer, as any committed block is applied. Then the replica starts from the safety state,
the newest committed blocks (what the election reads) and the pending blocks above the tip.
Each of those committed blocks' state-root claims is checked against the roots this ledger
computed as the replica takes it, so a divergent ledger is refused before any effect is
performed; the blocks are decoded one at a time, keeping their stored bytes as their encoding.

The seam is time: this runs once, before the node's tasks start and before its host exists,
and it owns nothing afterwards but the opened stores, which it hands out and closes at the end.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lockstep.consensus import limits
from lockstep.consensus.block_tree import election_history_blocks
from lockstep.consensus.codec import decode, remember_encoding
from lockstep.consensus.messages import Block, QuorumCert
from lockstep.consensus.safety_rules import SafetyReset, SafetyState
from lockstep.consensus.sync import CommittedBlock

from . import views
from .block_store import BlockStore, StoredBlock
from .chain_app import ROOT_HISTORY, ChainApp
from .committer import Committer
from .consensus_driver import ConsensusDriver
from .context import NodeContext, StartupError
from .exchange.executor import Exchange
from .mempool_journal import MempoolJournal
from .pending_store import PendingBlockStore
from .safety_store import SafetyStore
from .worker import SqliteWorker

RESTART_ROOT_CHECKS = 256
"""Newest stored blocks whose state-root claims a restarting node checks against its ledger
(as it hands them to the replica, which decodes them anyway)."""


@dataclass(frozen=True)
class Stores:
    """What the node keeps on disk, opened together and closed together."""

    safety: SafetyStore
    pending: PendingBlockStore
    blocks: BlockStore
    exchange: Exchange
    journal: MempoolJournal

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        ctx: NodeContext,
        worker: SqliteWorker,
        safety: SafetyStore,
        pending: PendingBlockStore,
    ) -> Stores:
        """Open the SQLite stores (on the worker, which every later call to them uses) and the
        journal, beside the safety state and pending log the node already holds."""
        data_dir.mkdir(parents=True, exist_ok=True)
        blocks = await worker.run(BlockStore, data_dir / "blocks.sqlite")
        exchange = await worker.run(
            Exchange.open, data_dir / "ledger.sqlite", ctx.genesis, time.monotonic
        )
        journal = MempoolJournal(data_dir, worker.run)
        return cls(safety, pending, blocks, exchange, journal)

    async def close(self, worker: SqliteWorker) -> None:
        self.pending.close()
        self.safety.close()
        self.journal.close()
        await worker.run(self.exchange.close)
        await worker.run(self.blocks.close)


async def handshake(
    ctx: NodeContext,
    data_dir: Path,
    worker: SqliteWorker,
    stores: Stores,
    app: ChainApp,
    committer: Committer,
    driver: ConsensusDriver,
    reset_safety_state: bool = False,
) -> None:
    """Reconcile block store, ledger and safety state, or refuse to start.

    ``reset_safety_state``: the operator says the safety state is lost (or the data directory
    was remade under a key that may have voted); the replica starts only once peers have shown
    how far the views went (:class:`SafetyReset`)."""
    store, ex = stores.blocks, stores.exchange
    tip, ledger_height = store.tip_height, ex.height
    ctx.log.info("handshake", block_store_height=tip, ledger_height=ledger_height)
    if ledger_height > tip:
        raise StartupError(
            f"the ledger is at height {ledger_height} but the block store only reaches {tip}: "
            f"the ledger cannot be ahead of the blocks it was built from. Restore the data "
            f"directory {data_dir} from one backup, or remove it to resync."
        )
    first = max(1, ledger_height - ROOT_HISTORY)  # the roots the replica's checks keep
    recent = await worker.run(views.state_roots, ex, first, tip)
    for h, root in recent:
        app.roots[h] = root
    app.applied_height, app.applied_root = ledger_height, ex.state_root
    app.cleared_height = tip  # replayed below: no proposal needs to skip their txs
    if ledger_height:
        app.roots[ledger_height] = ex.state_root
    committer.resume_from(ledger_height, ex.state_root)
    for h in range(ledger_height + 1, tip + 1):
        stored = await worker.run(store.get, h)
        assert stored is not None
        block = decode(stored.block, Block, max_bytes=limits.MAX_MESSAGE_BYTES)
        ids = tuple(tx.tx_id(ctx.chain_id) for tx in block.txs)
        await committer.apply([(block, stored.block_hash, ids)])
    if tip > ledger_height:
        ctx.log.info("handshake_replayed", blocks=tip - ledger_height, height=tip)
    safety: SafetyState | None = None
    if not reset_safety_state:
        raw_safety = stores.safety.load()  # SafetyStateLost if slots exist and none verifies
        if raw_safety is not None:
            safety = decode(raw_safety, SafetyState, max_bytes=limits.MAX_MESSAGE_BYTES)
    else:
        lost = stores.safety.load_for_reset()
        ctx.log.warning("safety_reset_requested", slots_were_damaged=lost)
    committed = await _recent_committed(ctx, data_dir, worker, store, app, tip)
    pending = tuple(_decoded_block(raw) for raw in stores.pending.load(above=tip))
    stores.pending.prune(tip)
    reset = None
    if reset_safety_state:
        top = await worker.run(store.get, tip) if tip else None
        local_view = max([top.view if top else 0, *(b.view for b in pending)])
        vset = driver.replica.vset
        if vset.total_weight == vset.weight(ctx.index):
            raise StartupError(
                "--reset-safety-state: this validator is the chain's only one, so no peer can "
                "show how far its views went; a lost safety state cannot be recovered here"
            )
        reset = SafetyReset(vset, ctx.index, local_view)
    # The replica takes the recent blocks one at a time; each one's state-root claim is
    # checked as it is decoded (a StartupError stops the node before any effect).
    driver.start(safety, committed, pending, reset)


async def _recent_committed(
    ctx: NodeContext,
    data_dir: Path,
    worker: SqliteWorker,
    store: BlockStore,
    app: ChainApp,
    tip: int,
) -> Iterator[CommittedBlock]:
    """The last epochs' committed blocks for the replica's ``Start``, decoded one at a time
    as the replica takes them: it keeps only the newest few whole, so decoding them all
    first would make a restart's memory peak several hundred full blocks high."""
    want = max(election_history_blocks(ctx.genesis.timing.epoch_views), RESTART_ROOT_CHECKS)
    rows: deque[StoredBlock] = deque()
    h = max(1, tip - want + 1)
    while h <= tip:
        got = await worker.run(store.range, h, tip)
        if not got:
            break
        rows.extend(got)
        h = got[-1].height + 1

    def decoded() -> Iterator[CommittedBlock]:
        while rows:
            stored = rows.popleft()
            block = _decoded_block(stored.block)
            _check_root_claim(app, data_dir, block)
            qc = decode(stored.certificate, QuorumCert, max_bytes=limits.MAX_MESSAGE_BYTES)
            yield CommittedBlock(block, qc)

    return decoded()


def _check_root_claim(app: ChainApp, data_dir: Path, block: Block) -> None:
    """A stored block's state-root claim must match what this node's ledger computed."""
    mine = app.roots.get(block.state_height)
    if block.state_height and mine is not None and mine != block.state_root:
        raise StartupError(
            f"state root mismatch at height {block.state_height}: block {block.height} "
            f"says {block.state_root.hex()}, this ledger computed {mine.hex()}. The "
            f"ledger diverged; remove {data_dir}/ledger.sqlite to rebuild it."
        )


def _decoded_block(raw: bytes) -> Block:
    """A block this node stored, decoded; it keeps ``raw`` as its encoding, so hashing it
    re-encodes nothing."""
    block = decode(raw, Block, max_bytes=limits.MAX_MESSAGE_BYTES)
    remember_encoding(block, raw)
    return block
