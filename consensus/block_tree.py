"""The tree of known blocks above (and the chain up to) the last committed block.

Theory of operation: every block a replica accepts names its parent by hash and carries the QC
of that parent, so the known blocks form a tree rooted at the genesis anchor. A node of the tree
holds the block, its hash, the QC that certifies it (once one is seen: its child's ``justify``,
a vote quorum, or a timeout's high QC), the VRF outputs of the tickets it carries (verified on
insertion), its proposer (the election's reputation rule reads it after the block itself is
dropped), and two numbers the leader election needs in O(1):

* ``gaps`` — views in ``[first view of its epoch, its view)`` that hold no block of its chain
  (each such view ended in a timeout on this chain), and
* ``epoch_tail`` — the nearest ancestor in an earlier epoch, so walking back by epochs is cheap.

Commit moves a pointer forward along one chain; the tree asserts it only ever moves to a
descendant (two commits that do not extend one another mean this replica is broken, and it
stops loudly). Blocks that do not descend from the committed block are pruned.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from .messages import Block, QuorumCert

__all__ = [
    "ELECTION_EPOCHS",
    "REPUTATION_EPOCHS",
    "RETAIN_COMMITTED_BLOCKS",
    "RETAIN_FULL_BLOCKS",
    "RETAIN_FULL_TXS",
    "TICKET_LEAD_EPOCHS",
    "BlockTree",
    "ConflictingCommit",
    "TreeNode",
]

TICKET_LEAD_EPOCHS = 2
"""Tickets for epoch e ride in blocks of epoch e − 2 (one whole epoch before the ranking is
needed, so the window is closed on a chain before anything depends on it). Defined here, with
the history it implies, because the tree's retention depends on it; ``election`` applies it."""
REPUTATION_EPOCHS = 3
"""A leader that let its view time out is demoted in the ranking of the next this-many epochs
(``election.demoted``): long enough that a crashed sequencer stays out of the way for a few
epochs, short enough that a validator back from a restart regains its place. Three, so the
failures it reads lie no deeper than the seed already reads (no more history to hand back)."""
ELECTION_EPOCHS = max(TICKET_LEAD_EPOCHS + 1, REPUTATION_EPOCHS)
"""Whole epochs before the current one that the election reads: epoch ``e``'s ranking takes
its tickets from blocks of epoch ``e − 2`` and its seed from those of ``e − 3``, and its
reputation from the views of ``e − 3 … e − 1``, so a replica needs its chain back to a block
of view below ``start(e − 3)`` (see ``election``)."""


def election_history_blocks(epoch_views: int) -> int:
    """Committed blocks, counted back from the newest, that always reach below view
    ``start(e − ELECTION_EPOCHS)`` for the newest block's epoch ``e``: along a chain the view
    rises at least as fast as the height, so ``ELECTION_EPOCHS + 1`` epochs of views (the
    current one may be nearly complete) plus the block below them always do. Fewer — three
    epochs' worth, say — leave a restarted replica unable to elect the leaders of the rest of
    its current epoch: it neither votes nor leads until the next epoch begins."""
    return (ELECTION_EPOCHS + 1) * epoch_views + 1


RETAIN_COMMITTED_BLOCKS = 4_096
"""Committed blocks kept in memory to serve sync and elect leaders (never fewer than
``election_history_blocks``, whatever this says); older ones live in the node's block store."""
RETAIN_FULL_BLOCKS = 64
"""Of those, the newest committed blocks that keep their transactions (to serve peers that
fetch by hash; a peer further behind than a sync response asks for committed blocks, which
the node serves from its block store). Older ones keep only the numbers the election needs:
a full block can be megabytes, the numbers are a few dozen bytes."""
RETAIN_FULL_TXS = 4_096
"""And at most this many transactions in those whole blocks: under overload blocks hold
thousands each, and 64 of them would hold a minute of flow, decoded (the node serves committed
blocks from its block store; only a replica without one, in the simulator, serves its own)."""


class ConflictingCommit(AssertionError):
    """Committing a block that does not extend the committed chain. A broken invariant."""

    def __init__(self, height: int, block_hash: bytes, committed_height: int) -> None:
        super().__init__(
            f"block {block_hash.hex()[:16]} at height {height} does not extend the committed "
            f"chain at height {committed_height}"
        )


@dataclass(slots=True, eq=False)
class TreeNode:
    hash: bytes
    block: Block | None
    """None for the genesis anchor, and for committed blocks older than the tree's full window
    (their hash, view, gaps and tickets stay; the block itself is in the node's block store)."""
    height: int
    view: int
    parent: bytes | None
    timestamp_ms: int
    gaps: int
    epoch_tail: bytes | None
    tickets: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    """validator → (ticket epoch, VRF output) of the tickets in this block."""
    qc: QuorumCert | None = None
    committed: bool = False
    proposer: int = -1
    """The block's proposer (−1 for the genesis anchor): kept when the block is dropped, since
    the election's reputation rule reads it (``election.demoted``)."""


class BlockTree:
    def __init__(
        self, genesis_hash: bytes, genesis_qc: QuorumCert, genesis_time_ms: int, epoch_views: int
    ) -> None:
        self.epoch_views = epoch_views
        root = TreeNode(
            genesis_hash, None, 0, 0, None, genesis_time_ms, 0, None, qc=genesis_qc, committed=True
        )
        self.genesis = root
        self.nodes: dict[bytes, TreeNode] = {genesis_hash: root}
        self.committed = root
        self.children: dict[bytes, list[bytes]] = {}
        self.uncommitted: set[bytes] = set()
        self.retain = max(RETAIN_COMMITTED_BLOCKS, election_history_blocks(epoch_views))
        self._committed_order: collections.deque[bytes] = collections.deque()
        self._full: collections.deque[TreeNode] = collections.deque()
        self._full_txs = 0
        self.history_starts_at: TreeNode = root
        """The oldest block whose ancestors are known (genesis unless restarted mid-chain)."""

    def epoch(self, view: int) -> int:
        return view // self.epoch_views

    def __contains__(self, block_hash: bytes) -> bool:
        return block_hash in self.nodes

    def get(self, block_hash: bytes) -> TreeNode | None:
        return self.nodes.get(block_hash)

    def gaps_before(self, parent: TreeNode, view: int) -> int:
        """``gaps`` a block at ``view`` on top of ``parent`` would have."""
        if self.epoch(parent.view) == self.epoch(view):
            return parent.gaps + (view - parent.view - 1)
        return view - self.epoch(view) * self.epoch_views

    def insert(
        self, block: Block, block_hash: bytes, tickets: dict[int, tuple[int, bytes]]
    ) -> TreeNode:
        parent = self.nodes[block.parent_hash]
        assert parent.height + 1 == block.height and parent.view < block.view
        if self.epoch(parent.view) < self.epoch(block.view):
            tail: bytes | None = parent.hash
        else:
            tail = parent.epoch_tail
        node = TreeNode(
            block_hash,
            block,
            block.height,
            block.view,
            parent.hash,
            block.timestamp_ms,
            self.gaps_before(parent, block.view),
            tail,
            tickets,
            proposer=block.proposer,
        )
        self.nodes[block_hash] = node
        self.uncommitted.add(block_hash)
        self.children.setdefault(parent.hash, []).append(block_hash)
        if parent.qc is None:
            parent.qc = block.justify
        return node

    def add_root(
        self, block: Block, block_hash: bytes, tickets: dict[int, tuple[int, bytes]]
    ) -> TreeNode:
        """Start the known chain at a committed block whose ancestors we do not hold (a node
        restarted with only its recent history). Walks below it raise ``MissingHistory``."""
        assert self.committed is self.genesis and len(self.nodes) == 1
        node = TreeNode(
            block_hash,
            block,
            block.height,
            block.view,
            block.parent_hash,
            block.timestamp_ms,
            0,
            None,
            tickets,
            proposer=block.proposer,
        )
        self.nodes[block_hash] = node
        self.uncommitted.add(block_hash)
        self.genesis.committed = True
        self.committed = self.genesis
        self.history_starts_at = node
        return node

    def certify(self, qc: QuorumCert) -> TreeNode | None:
        node = self.nodes.get(qc.block_hash)
        if node is not None and node.qc is None:
            node.qc = qc
        return node

    def ancestor_below(self, node: TreeNode, view_bound: int) -> TreeNode | None:
        """The highest ancestor of ``node`` (itself included) with ``view < view_bound``.

        None if the walk runs off the known chain (a node restarted with too short a history).
        """
        cur: TreeNode | None = node
        while cur is not None and cur.view >= view_bound:
            if self.epoch(cur.view) * self.epoch_views >= view_bound and cur.epoch_tail:
                cur = self.nodes.get(cur.epoch_tail)
            else:
                cur = self.nodes.get(cur.parent) if cur.parent is not None else None
        return cur

    def walk_down(self, node: TreeNode, min_view: int):
        """Yield ``node`` and its ancestors while their view is ``≥ min_view``."""
        cur: TreeNode | None = node
        while cur is not None and cur.view >= min_view:
            yield cur
            cur = self.nodes.get(cur.parent) if cur.parent is not None else None

    def extends(self, node: TreeNode, ancestor: TreeNode) -> bool:
        cur: TreeNode | None = node
        while cur is not None and cur.height > ancestor.height:
            cur = self.nodes.get(cur.parent) if cur.parent is not None else None
        return cur is ancestor

    def commit_through(self, node: TreeNode) -> list[TreeNode]:
        """Mark ``node`` and its uncommitted ancestors committed; return them oldest first."""
        if node.committed:
            return []
        chain: list[TreeNode] = []
        cur: TreeNode | None = node
        while cur is not None and not cur.committed:
            chain.append(cur)
            cur = self.nodes.get(cur.parent) if cur.parent is not None else None
        if cur is None and chain and chain[-1] is self.history_starts_at:
            cur = self.committed  # the first block of a history that starts mid-chain
        if cur is not self.committed:
            raise ConflictingCommit(node.height, node.hash, self.committed.height)
        chain.reverse()
        for n in chain:
            n.committed = True
            self.uncommitted.discard(n.hash)
            self._committed_order.append(n.hash)
            if n.block is not None:
                self._full.append(n)
                self._full_txs += len(n.block.txs)
        # The blocks just committed are handed to the caller whole, so keep at least those.
        full = self._full
        while len(full) > len(chain) and (
            len(full) > RETAIN_FULL_BLOCKS or self._full_txs > RETAIN_FULL_TXS
        ):
            old = full.popleft()
            assert old.block is not None
            self._full_txs -= len(old.block.txs)
            old.block = None
        while len(self._committed_order) > self.retain:
            old = self.nodes.pop(self._committed_order.popleft())
            self.children.pop(old.hash, None)
            self.history_starts_at = self.nodes[self._committed_order[0]]
        self.committed = node
        self._prune()
        return chain

    def _prune(self) -> None:
        """Drop blocks that can no longer be committed (not descendants of the committed one)."""
        root = self.committed
        nodes = self.nodes
        doomed = [
            h
            for h in self.uncommitted
            if nodes[h].height <= root.height or not self.extends(nodes[h], root)
        ]
        for h in doomed:
            self.uncommitted.discard(h)
            node = nodes.pop(h)
            if node.parent is not None:
                siblings = self.children.get(node.parent)
                if siblings and h in siblings:
                    siblings.remove(h)
