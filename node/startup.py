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

Damage is found before the node serves or votes. Each SQLite file passes ``PRAGMA
quick_check`` (its b-trees and pages are well formed) before it is used: linear in the file,
measured 0.13 s per 100 MB from the page cache and 1.5 s per 100 MB from a cold disk (pages
the ledger's load reads next anyway), against the silent start a damaged page gave. The
ledger then rebuilds its in-memory state and recomputes its state root, which must equal the
root the file recorded and the root the certified chain claims for that height (the first
stored block whose ``state_height`` is the ledger's). A ledger that fails any of these is
moved aside (``ledger.sqlite.damaged-<time>``) and rebuilt from genesis by replaying the
block store, as a ledger that is behind is: it was only ever a function of the certified
blocks. (A ledger at the store's tip has no claim about its height stored yet: the next
block that makes one is checked as it is applied, and a mismatch stops the node.) A damaged
block store cannot be rebuilt from anything on this node: one line names it and what to do.

The seam is time: this runs once, before the node's tasks start and before its host exists,
and it owns nothing afterwards but the opened stores, which it hands out and closes at the end.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lockstep.consensus import limits
from lockstep.consensus.block_tree import election_history_blocks
from lockstep.consensus.codec import CodecError, decode, remember_encoding
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
from .exchange.ledger import ConservationError
from .faults import BlockStoreDamaged, LedgerDamaged
from .mempool_journal import MempoolJournal
from .pending_store import PendingBlockStore
from .safety_store import SafetyStore
from .worker import SqliteWorker

LEDGER_FILE = "ledger.sqlite"
BLOCKS_FILE = "blocks.sqlite"
CLAIM_SEARCH_BLOCKS = 16
"""Stored blocks above the ledger's height searched for the one claiming its root (a block
claims its proposer's last applied height, normally two below its own)."""

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
        blocks = await worker.run(open_block_store, data_dir / BLOCKS_FILE)
        try:
            exchange = await worker.run(open_ledger, data_dir / LEDGER_FILE, ctx, blocks)
        except LedgerDamaged as e:
            aside = await worker.run(move_aside, e.path)
            ctx.log.error(
                "ledger_damaged_rebuilding",
                file=str(e.path),
                reason=e.detail,
                moved_to=str(aside),
                blocks=blocks.tip_height,
            )
            exchange = await worker.run(open_ledger, e.path, ctx, blocks)
        journal = MempoolJournal(data_dir, worker.run)
        return cls(safety, pending, blocks, exchange, journal)

    async def close(self, worker: SqliteWorker) -> None:
        self.pending.close()
        self.safety.close()
        self.journal.close()
        await worker.run(self.exchange.close)
        await worker.run(self.blocks.close)


def quick_check(path: Path) -> str | None:
    """What ``PRAGMA quick_check`` finds wrong with the SQLite file at ``path``, or None.

    Opened read-only and apart from the store's own connection, so a damaged file is never
    written to (the WAL is read as the store would)."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("PRAGMA quick_check(4)").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        return str(e)
    found = [" ".join(str(r[0]).split()) for r in rows]
    return None if found == ["ok"] else "; ".join(found)


def open_block_store(path: Path) -> BlockStore:
    """The block store, checked; :class:`BlockStoreDamaged` if it cannot be trusted."""
    bad = quick_check(path)
    if bad is not None:
        raise BlockStoreDamaged(path, f"quick_check: {bad}")
    try:
        store = BlockStore(path)
        if store.tip_height:
            top = store.get(store.tip_height)
            assert top is not None
            decode(top.block, Block, max_bytes=limits.MAX_MESSAGE_BYTES)
    except (sqlite3.DatabaseError, CodecError) as e:
        raise BlockStoreDamaged(path, str(e)) from e
    return store


def open_ledger(path: Path, ctx: NodeContext, blocks: BlockStore) -> Exchange:
    """The ledger, checked against itself and the certified chain; :class:`LedgerDamaged`
    if it is not what the blocks it was built from say (the caller rebuilds it)."""
    bad = quick_check(path)
    if bad is not None:
        raise LedgerDamaged(path, f"quick_check: {bad}")
    try:
        ex = Exchange.open(path, ctx.genesis, time.monotonic)
    except (sqlite3.DatabaseError, ConservationError, KeyError, ValueError, CodecError) as e:
        if isinstance(e, ValueError) and "another chain" in str(e):
            raise StartupError(f"{e}: this data directory is not this chain's") from e
        raise LedgerDamaged(path, f"{type(e).__name__}: {e}") from e
    claim = _claimed_root(blocks, ex.height)
    if claim is not None and claim[1] != ex.state_root:
        ex.close()
        raise LedgerDamaged(
            path,
            f"its root at height {ex.height} is {ex.state_root.hex()[:16]}…, certified block "
            f"{claim[0]} says {claim[1].hex()[:16]}…",
        )
    return ex


def _claimed_root(blocks: BlockStore, height: int) -> tuple[int, bytes] | None:
    """(block height, root) of the first stored block claiming the root after ``height``."""
    if height == 0:
        return None
    for stored in blocks.range(height + 1, height + CLAIM_SEARCH_BLOCKS):
        block = decode(stored.block, Block, max_bytes=limits.MAX_MESSAGE_BYTES)
        if block.state_height == height:
            return block.height, block.state_root
        if block.state_height > height:
            break
    return None


def move_aside(path: Path) -> Path:
    """Move a damaged SQLite file (and its WAL and shared-memory files) out of the way,
    keeping it for a post-mortem; returns where it went."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(aside.with_name(aside.name + suffix))
    return aside


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
        try:
            stored = await worker.run(store.get, h)
            if stored is None:
                raise BlockStoreDamaged(store.path, f"height {h} is missing below tip {tip}")
            block = decode(stored.block, Block, max_bytes=limits.MAX_MESSAGE_BYTES)
        except (sqlite3.DatabaseError, CodecError) as e:
            raise BlockStoreDamaged(store.path, f"height {h}: {e}") from e
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
    try:
        pending = tuple(_decoded_block(raw) for raw in stores.pending.load(above=tip))
    except CodecError as e:
        path = stores.pending.path
        raise StartupError(
            f"the pending-block log {path} holds a block that does not decode ({e}): move it "
            f"aside and start again (the replica fetches the blocks it names from peers)"
        ) from e
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
