"""The node's side of consensus: what goes into a block this node proposes, and whether a
block another validator proposes gets this node's vote.

Theory of operation. The replica calls these hooks synchronously from ``handle``, on the trio
thread, so they use only state that lives there: the mempool, the set of transactions this
node has already verified, the state roots of applied heights, and the transactions of blocks
proposed but not yet committed ("in flight"). The exchange itself lives on the SQLite worker
and is never read here.

Proposing: the oldest pending transactions that are not already in an uncommitted ancestor,
within the block limits, and the state root of the last height this node has applied (with
that height: execution is pipelined, so in steady state the root lags the block by two).

Voting: a block gets a vote only if its timestamp is not before its parent's nor too far
ahead of this node's clock, it carries no transaction twice, every transaction's signature
verifies (most were already verified on arrival and are looked up), and its state root
matches this node's own root at the named height when this node has applied that height
(otherwise the root is remembered and checked when it gets there; a mismatch stops the node).
Consensus never looks inside transactions; the exchange skips inadmissible ones
deterministically when the block is applied.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import structlog
from lockstep.consensus import limits
from lockstep.consensus.actions import SignedTx
from lockstep.consensus.block_tree import TreeNode
from lockstep.consensus.crypto import SignatureError, sha256, signing_bytes
from lockstep.consensus.messages import Block
from lockstep.consensus.replica import Payload

from .mempool import Mempool

log = structlog.get_logger("lockstep.node")

TX_IDS_TRIM_AT = 64
"""Blocks' transaction ids held before the first sweep of those at or below the cleared height
(forks that never committed); the next sweep waits until the map doubles."""
VERIFIED_CACHE_TXS = 50_000
"""Transactions whose signature this node checked and that no committed block holds yet (as
many as the mempool holds)."""

ROOT_HISTORY = 4_096
"""Applied heights whose state root is kept to check proposals against."""

TX_OVERHEAD_BYTES = 16
"""Allowance per transaction for its CBOR framing inside a block's list."""


class StateDivergence(AssertionError):
    """A committed block names a state root this node did not compute: the ledgers differ.

    Never a peer's fault alone; the node stops loudly rather than run on a forked ledger.
    """


def tx_id_of(tx: SignedTx, chain_id: bytes) -> bytes:
    return tx.tx_id(chain_id)


class ChainApp:
    def __init__(
        self,
        chain_id: bytes,
        mempool: Mempool,
        max_clock_drift_ms: int,
        block_max_txs: int = limits.MAX_BLOCK_TXS,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        lookup: Callable[[bytes], TreeNode | None] = lambda h: None,
    ) -> None:
        self.chain_id = chain_id
        self.mempool = mempool
        self.max_clock_drift_ms = max_clock_drift_ms
        self.block_max_txs = min(block_max_txs, limits.MAX_BLOCK_TXS)
        self.clock_ms = clock_ms
        self.lookup = lookup
        """The replica's block tree: ancestors of a new block, certified or not."""
        self.cleared_height = 0
        """Highest committed height whose transactions have left the mempool."""
        self.verified: OrderedDict[bytes, tuple[SignedTx, bytes]] = OrderedDict()
        """signature → (transaction, id) of transactions whose signature this node checked,
        noted as they enter the mempool (a refused one is not kept) and dropped at commit.
        A proposal's copy of one is recognised by an equal signature and an equal decoded
        transaction (typed fields, so equal values are equal encodings): its id is not
        computed again."""
        self.roots: OrderedDict[int, bytes] = OrderedDict()
        self.applied_height = 0
        self.applied_root = b""
        self.expected_roots: dict[int, bytes] = {}
        self.block_tx_ids: dict[bytes, tuple[int, tuple[bytes, ...]]] = {}
        """block hash → (height, its transaction ids), for blocks seen but not yet cleared.
        Kept here, not read from the tree: the tree drops the transactions of committed blocks
        past its full window, while this node's ledger (and so ``cleared_height``) may lag
        further behind than that — after a partition, say — and its next proposal must still
        skip every transaction committed above it."""
        self._trim_at = TX_IDS_TRIM_AT
        self.refused: dict[str, int] = {}

    # ------------------------------------------------------------------ bookkeeping

    def note_verified(self, tx: SignedTx, tx_id: bytes) -> None:
        self.verified[tx.signature] = (tx, tx_id)
        if len(self.verified) > VERIFIED_CACHE_TXS:
            self.verified.popitem(last=False)

    def note_applied(self, height: int, root: bytes) -> None:
        """The exchange applied ``height``; check any root a committed block claimed for it."""
        assert height == self.applied_height + 1 or self.applied_height == 0, (
            f"applied height {height} after {self.applied_height}"
        )
        self.applied_height, self.applied_root = height, root
        self.roots[height] = root
        while len(self.roots) > ROOT_HISTORY:
            self.roots.popitem(last=False)
        claimed = self.expected_roots.pop(height, None)
        if claimed is not None and claimed != root:
            raise StateDivergence(
                f"state root mismatch at height {height}: the chain says {claimed.hex()}, "
                f"this node computed {root.hex()}"
            )

    def note_final(self, block: Block, block_hash: bytes) -> None:
        """The replica committed ``block`` (the ledger applies it later): keep its ids until
        then, for ``_pending_in_ancestors``."""
        if block_hash not in self.block_tx_ids and block.height > self.cleared_height:
            self.block_tx_ids[block_hash] = (block.height, self._tx_ids(block))

    def note_committed(self, block: Block, block_hash: bytes) -> tuple[bytes, ...]:
        """A block is final: remember the root it claims; return its transaction ids.

        The caller removes those ids from the mempool at once, so from here on proposals no
        longer need to skip them explicitly (``cleared_height``).
        """
        known = self.block_tx_ids.pop(block_hash, None)
        ids = self._tx_ids(block) if known is None else known[1]
        verified = self.verified
        for tx in block.txs:  # final: only a repeat would look them up again (and re-verify)
            verified.pop(tx.signature, None)
        if block.state_height > self.applied_height:
            self.expected_roots[block.state_height] = block.state_root
        elif block.state_height and self.roots.get(block.state_height, block.state_root) != (
            block.state_root
        ):
            raise StateDivergence(
                f"committed block {block.height} claims root {block.state_root.hex()} at height "
                f"{block.state_height}; this node computed {self.roots[block.state_height].hex()}"
            )
        self.cleared_height = max(self.cleared_height, block.height)
        if len(self.block_tx_ids) > self._trim_at:  # forks at or below the cleared height
            cleared = self.cleared_height
            for h in [h for h, (height, _) in self.block_tx_ids.items() if height <= cleared]:
                del self.block_tx_ids[h]
            self._trim_at = max(TX_IDS_TRIM_AT, 2 * len(self.block_tx_ids))
        return ids

    def _known_id(self, tx: SignedTx) -> bytes | None:
        """The id of ``tx`` if this node verified it (an equal decoded copy counts), else None."""
        known = self.verified.get(tx.signature)
        if known is not None and (known[0] is tx or known[0] == tx):
            return known[1]
        return None

    def _tx_ids(self, block: Block) -> tuple[bytes, ...]:
        known_id, chain_id = self._known_id, self.chain_id
        return tuple(known_id(tx) or tx.tx_id(chain_id) for tx in block.txs)

    def _pending_in_ancestors(self, parent_hash: bytes) -> set[bytes]:
        """Transaction ids in the new block's ancestors whose ids are still in the mempool."""
        ids: set[bytes] = set()
        node = self.lookup(parent_hash)
        while node is not None and node.height > self.cleared_height:
            cached = self.block_tx_ids.get(node.hash)
            if cached is None:
                if node.block is None:  # the genesis anchor; any other is a bookkeeping bug
                    if node.height:  # (execution would still refuse a repeat as REPLAYED)
                        log.error("tx_ids_missing", height=node.height, cleared=self.cleared_height)
                    break
                cached = self.block_tx_ids[node.hash] = (node.height, self._tx_ids(node.block))
            ids.update(cached[1])
            node = self.lookup(node.parent) if node.parent is not None else None
        return ids

    # ------------------------------------------------------------------ replica hooks

    def make_payload(self, parent: Block | None, height: int, view: int, now_ms: int) -> Payload:
        taken = self._pending_in_ancestors(self._hash(parent)) if parent is not None else set()
        budget = limits.MAX_BLOCK_BYTES - 64 * 1024  # room for the header, QC and tickets
        txs: list[SignedTx] = []
        size = 0
        for p in self.mempool.take(self.block_max_txs + len(taken), budget, height):
            if p.tx_id in taken:
                continue
            if len(txs) >= self.block_max_txs or size + len(p.raw) + TX_OVERHEAD_BYTES > budget:
                break
            txs.append(p.tx)
            size += len(p.raw) + TX_OVERHEAD_BYTES
        state_height = self.applied_height
        if parent is not None and parent.state_height > state_height:
            state_height = parent.state_height  # a lagging proposer repeats its parent's claim
            root = parent.state_root
        else:
            root = self.applied_root or bytes(32)
        return Payload(tuple(txs), root, state_height)

    def validate_block(self, block: Block, parent: Block | None) -> bool:
        reason = self._refusal(block, parent)
        if reason is not None:
            self.refused[reason] = self.refused.get(reason, 0) + 1
            log.warning("block_refused", height=block.height, view=block.view, reason=reason)
            return False
        return True

    def _refusal(self, block: Block, parent: Block | None) -> str | None:
        parent_ts = parent.timestamp_ms if parent is not None else 0
        if block.timestamp_ms < parent_ts:
            return "timestamp_before_parent"
        if block.timestamp_ms > self.clock_ms() + self.max_clock_drift_ms:
            return "timestamp_in_future"
        parent_state = parent.state_height if parent is not None else 0
        if not parent_state <= block.state_height < block.height:
            return "state_height_out_of_order"
        if (
            block.state_height == parent_state
            and parent is not None
            and (block.state_root != parent.state_root)
        ):
            return "state_root_changed_without_height"
        known = self.roots.get(block.state_height)
        if known is not None and known != block.state_root:
            return "state_root_mismatch"
        ids = []
        for tx in block.txs:
            known = self._known_id(tx)
            if known is not None:
                ids.append(known)
                continue
            body = tx.body
            tx_id = sha256(signing_bytes(body.DOMAIN, self.chain_id, body.encode()))
            if tx_id not in self.mempool:
                try:
                    tx.verify(self.chain_id)
                except SignatureError:
                    return "bad_transaction_signature"
            self.note_verified(tx, tx_id)
            ids.append(tx_id)
        id_set = frozenset(ids)
        if len(id_set) != len(ids):
            return "duplicate_transaction"
        self.block_tx_ids[self._hash(block)] = (block.height, tuple(ids))
        return None

    def _hash(self, block: Block) -> bytes:
        return block.block_hash(self.chain_id)
