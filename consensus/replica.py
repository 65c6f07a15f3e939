"""The consensus replica: a sans-I/O state machine, ``handle(event) -> list[Effect]``.

Theory of operation. Everything that changes a replica's consensus state happens in this file,
in response to one event at a time (see ``events``); everything it wants done comes back as an
ordered list of effects (see ``effects``). The protocol is chained 2-chain HotStuff (Jolteon /
DiemBFT v4):

1. The leader of view ``v`` proposes a block extending its highest QC (and, if it entered
   ``v`` through a timeout certificate, attaches that TC). Leaders come from ``election``.
2. A replica checks the proposal (signature, certificates, leader, limits, tickets, the node's
   validation hook), asks ``safety_rules`` for a vote, persists the new safety state, and sends
   the vote to the leader of ``v + 1``.
3. That leader gathers a quorum of votes into a QC, enters ``v + 1`` and proposes on top.
4. A QC for block ``B`` whose parent ``P`` has view ``B.view − 1`` commits ``P`` and all its
   ancestors (the 2-chain rule). Commits leave as ``Commit`` effects, in height order.
5. If a view produces no QC in time, replicas broadcast signed timeouts carrying their highest
   QC; a quorum of them is a TC, which moves everyone to the next view and (``election``) the
   next-ranked backup leader.
6. Any block a replica is missing (a parent, a QC's block) is fetched with ``sync`` messages;
   proposals waiting for a parent are parked and resumed when it arrives.

Input from peers is never trusted: a message that fails a check is dropped and counted in
``rejected`` (by reason), and a dropped message changes nothing. A broken internal invariant
(e.g. a commit that does not extend the committed chain) raises and stops the replica.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import limits
from .actions import SignedTx
from .block_tree import BlockTree, TreeNode
from .codec import CodecError
from .crypto import DOMAIN_BLOCK, DOMAIN_PROPOSAL, Signer, sha256, signing_bytes
from .effects import Broadcast, Commit, Effect, PersistBlock, PersistSafety, Send, SetTimer
from .election import Election, InvalidTicket, MissingHistory
from .events import (
    Event,
    MessageReceived,
    PeerConnected,
    Start,
    TimerFired,
    TimerKind,
    TransactionsAvailable,
)
from .genesis import Genesis
from .messages import Block, Proposal, QuorumCert, Timeout, TimeoutCert, Vote, VoteData, VrfTicket
from .pacemaker import MAX_FUTURE_VIEWS, Pacemaker
from .quorum import CertificateError, ValidatorSet, Verifier, genesis_block_hash
from .safety_rules import NotSafe, SafetyRules, SafetyState
from .sync import (
    MAX_FETCH_ATTEMPTS,
    MAX_SYNC_BLOCKS,
    MAX_SYNC_RESPONSE_BYTES,
    SYNC_RETRY_MS,
    BlockRequest,
    BlockResponse,
    CommittedBlock,
    CommittedRequest,
    CommittedResponse,
    Fetcher,
    SyncInfo,
)
from .vrf import vrf_proof_to_hash, vrf_prove

__all__ = ["Application", "Payload", "Replica", "ReplicaHalted"]

MAX_PARKED_PROPOSALS = 64
"""Proposals waiting for a missing parent; the oldest is dropped beyond this."""

MAX_TICKET_POOL = 4 * limits.MAX_VALIDATORS
"""(epoch, validator) slots of tickets waiting for inclusion (a few epochs' worth)."""

MAX_TICKET_CANDIDATES = 4
"""Distinct tickets kept per slot: the genuine one, plus room for a few forgeries or one
made on a chain that lost (its seed differed)."""


@dataclass(frozen=True, slots=True)
class Payload:
    """What the node layer puts in a block this replica proposes."""

    txs: tuple[SignedTx, ...]
    state_root: bytes
    """Ledger state root after executing block ``state_height``."""
    state_height: int = 0
    """The last height the proposer's ledger has applied (execution is pipelined: in steady
    state the parent is certified but not yet committed, so this is usually height − 2)."""


class Application(Protocol):
    """The node layer's hooks. Consensus never looks inside transactions."""

    def make_payload(self, parent: Block | None, height: int, view: int, now_ms: int) -> Payload:
        """Transactions and state root for a new block at ``height`` on ``parent`` (None: the
        genesis anchor). At most ``limits.MAX_BLOCK_TXS`` txs and ``MAX_BLOCK_BYTES`` in all."""
        ...

    def validate_block(self, block: Block, parent: Block | None) -> bool:
        """Accept (True) or reject a proposed block's transactions and state root. A rejected
        block gets no vote from this replica, which times the view out at once."""
        ...


class EmptyApplication:
    """Proposes empty blocks with a fixed state root and accepts everything (tests, sim)."""

    def __init__(self, state_root: bytes = bytes(32)) -> None:
        self.state_root = state_root

    def make_payload(self, parent: Block | None, height: int, view: int, now_ms: int) -> Payload:
        return Payload((), self.state_root)

    def validate_block(self, block: Block, parent: Block | None) -> bool:
        return True


class ReplicaHalted(AssertionError):
    """An internal invariant broke; the replica must stop (never a peer's fault)."""


class Replica:
    """One validator's consensus core. Construct, then ``handle(Start(now_ms, ...))``."""

    def __init__(
        self,
        genesis: Genesis,
        index: int,
        signer: Signer,
        vrf_seed: bytes,
        app: Application,
        verifier: Verifier | None = None,
    ) -> None:
        assert 0 <= index < len(genesis.validators)
        assert genesis.validators[index].public_key == signer.public_key, "key/index mismatch"
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.index = index
        self.timing = genesis.timing
        self.vset = ValidatorSet.from_genesis(genesis, verifier or Verifier())
        self.n = self.vset.n
        self._signer = signer
        self._vrf_seed = vrf_seed
        self.app = app
        self.genesis_hash = genesis_block_hash(self.chain_id)
        self.rejected: Counter[str] = Counter()
        self.started = False
        self._out: list[Effect] = []
        self._now = 0
        self._reset_volatile(SafetyState.initial())

    def _reset_volatile(self, safety: SafetyState) -> None:
        g = self.vset.genesis_qc
        self.tree = BlockTree(
            self.genesis_hash, g, self.genesis.genesis_time_ms, self.timing.epoch_views
        )
        self.election = Election(self.vset, self.tree, self.timing.epoch_views)
        self.safety = SafetyRules(self._signer, self.index, self.chain_id, safety)
        self.pacemaker = Pacemaker(self.timing.view_timeout_ms, self.timing.view_timeout_max_ms, g)
        self.fetcher = Fetcher(
            self.n, self.index, max(1, min(SYNC_RETRY_MS, self.timing.view_timeout_ms // 2))
        )
        self._sync_timer_at: int | None = None
        self.catch_up_target = 0
        """Height of the highest certified block seen that is far above our commits."""
        self._catch_up: tuple[int, int, int] | None = None
        """The outstanding ``CommittedRequest``: (peer, sent at, attempt)."""
        self.votes: dict[VoteData, dict[int, Vote]] = {}
        self.vote_weight: dict[VoteData, int] = {}
        self.voters_in_view: dict[int, set[int]] = {}
        self.parked: dict[bytes, list[Proposal]] = {}
        self.pending_qcs: dict[bytes, QuorumCert] = {}
        self.ticket_pool: dict[tuple[int, int], list[VrfTicket]] = {}
        """(epoch, validator) → distinct tickets heard (unverified: anyone can relay junk, so
        a few candidates are kept and the first that verifies on our chain is used)."""
        self.my_ticket: VrfTicket | None = None
        self.my_tickets: dict[int, bytes] = {}
        """target epoch → seed the ticket we announced was made for."""
        self.proposed_view = 0
        self.last_proposal_ms = -(10**12)
        """When this replica last proposed a block that waited out the block interval."""
        self.follow_at_once: bytes | None = None
        """Our last such block, if it carries transactions: its child is proposed as soon as
        it is certified, since that child's QC is what commits it."""
        self.txs_pending = False
        self._persisted: set[bytes] = set()
        """Uncommitted blocks already handed to the node with ``PersistBlock``."""
        self._fetched: dict[bytes, tuple[Block, bytes]] = {}
        """Synced blocks whose parent is still being fetched, by parent hash."""

    # ------------------------------------------------------------------------- public API

    @property
    def view(self) -> int:
        return self.pacemaker.view

    @property
    def committed_height(self) -> int:
        return self.tree.committed.height

    def handle(self, event: Event) -> list[Effect]:
        """Process one event; return the effects to perform, in order."""
        self._out = []
        self._now = event.now_ms
        if isinstance(event, Start):
            self._on_start(event)
        elif not self.started:
            return []
        elif isinstance(event, MessageReceived):
            self._on_message(event.sender, event.message)
        elif isinstance(event, TimerFired):
            self._on_timer(event.kind, event.view)
        elif isinstance(event, TransactionsAvailable):
            self.txs_pending = True
            self._try_propose()
        elif isinstance(event, PeerConnected):
            if 0 <= event.peer < self.n and event.peer != self.index:
                self._out.append(Send(event.peer, self._sync_info()))
        else:  # pragma: no cover - typed union
            raise TypeError(f"unknown event {event!r}")
        out, self._out = self._out, []
        return out

    def status(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "view": self.view,
            "high_qc_view": self.pacemaker.high_qc.view,
            "high_tc_view": None if self.pacemaker.high_tc is None else self.pacemaker.high_tc.view,
            "committed_height": self.committed_height,
            "last_voted_view": self.safety.state.last_voted_view,
            "locked_view": self.safety.state.locked_view,
            "blocks_known": len(self.tree.nodes),
        }

    # ------------------------------------------------------------------------- start

    def _on_start(self, ev: Start) -> None:
        self._reset_volatile(ev.safety or SafetyState.initial())
        self.started = True
        for cb in ev.committed:
            block = cb.block
            h = self._hash(block)
            if h != cb.qc.block_hash:
                raise ReplicaHalted(f"stored block at height {block.height} does not match its QC")
            # Our own storage: its tickets were verified when the block was first accepted.
            tickets = {t.validator: (t.epoch, vrf_proof_to_hash(t.proof)) for t in block.tickets}
            if block.parent_hash in self.tree:
                node = self.tree.insert(block, h, tickets)
            elif self.tree.committed is self.tree.genesis:
                node = self.tree.add_root(block, h, tickets)  # history given from mid-chain
            else:
                raise ReplicaHalted(
                    f"stored block at height {block.height} is not the child of the one before it"
                )
            node.qc = cb.qc
            self.tree.commit_through(node)
            self.pacemaker.observe_qc(cb.qc)
        self._restore_pending(ev.pending)
        lock = self.safety.state.lock_qc
        if lock is not None and lock.height > self.committed_height:
            self._process_qc(lock, (self.index + 1) % self.n)
        self._advance_view()
        if self.view == 0:  # nothing advanced us: enter view 1 from the genesis QC
            self._enter_view(1, via_tc=False)

    def _restore_pending(self, pending: tuple[Block, ...]) -> None:
        """Re-insert the uncommitted blocks we stored before voting (validated back then)."""
        for block in sorted(pending, key=lambda b: b.height):
            h = self._hash(block)
            parent = self.tree.get(block.parent_hash)
            if block.height <= self.committed_height or h in self.tree or parent is None:
                continue
            tickets = {t.validator: (t.epoch, vrf_proof_to_hash(t.proof)) for t in block.tickets}
            self.tree.insert(block, h, tickets)
            self._persisted.add(h)
            self.pacemaker.observe_qc(block.justify)

    # ------------------------------------------------------------------------- messages

    def _on_message(self, sender: int, msg: Any) -> None:
        if not 0 <= sender < self.n:
            self.rejected["unknown sender"] += 1
            return
        try:
            if isinstance(msg, Proposal):
                self._on_proposal(sender, msg)
            elif isinstance(msg, Vote):
                self._on_vote(sender, msg)
            elif isinstance(msg, Timeout):
                self._on_timeout(sender, msg)
            elif isinstance(msg, SyncInfo):
                self._on_sync_info(sender, msg)
            elif isinstance(msg, BlockRequest):
                self._on_block_request(sender, msg)
            elif isinstance(msg, BlockResponse):
                self._on_block_response(sender, msg)
            elif isinstance(msg, CommittedRequest):
                self._on_committed_request(sender, msg)
            elif isinstance(msg, CommittedResponse):
                self._on_committed_response(sender, msg)
            elif isinstance(msg, VrfTicket):
                self._on_ticket(msg)
            else:
                self.rejected["unknown message"] += 1
        except (CertificateError, InvalidTicket, CodecError, MissingHistory) as e:
            self.rejected[type(e).__name__] += 1

    # -- certificates ----------------------------------------------------------------------

    def _process_qc(self, qc: QuorumCert, source: int) -> None:
        """A verified QC: raise high QC, certify, commit if it closes a 2-chain, sync views."""
        node = self.tree.certify(qc)
        if node is None:
            if qc.height > self.committed_height:
                self.pending_qcs.setdefault(qc.block_hash, qc)
                self._fetch(qc.block_hash, source)
                self._maybe_catch_up(qc.height, source)
        else:
            self._maybe_commit(node, qc)
        if self.pacemaker.observe_qc(qc):
            self._advance_view()
            if self.pacemaker.previous_view_certified():
                at = self._now + self.pacemaker.timeout_ms()
                self._out.append(SetTimer(TimerKind.VIEW, self.view, at))

    def _process_tc(self, tc: TimeoutCert, source: int) -> None:
        self._process_qc(tc.high_qc, source)
        if self.pacemaker.observe_tc(tc):
            self._advance_view()

    def _advance_view(self) -> None:
        target, via_tc = self.pacemaker.next_view()
        if target > self.view:
            self._enter_view(target, via_tc)

    def _maybe_commit(self, node: TreeNode, qc: QuorumCert) -> None:
        """2-chain commit rule: QC(B) with ``B.view = parent(B).view + 1`` commits parent(B)."""
        if node.block is None or node.parent is None:
            return
        parent = self.tree.get(node.parent)
        if parent is None or parent.committed or parent.view + 1 != node.view:
            return
        if parent.height <= self.committed_height:
            raise ReplicaHalted(
                f"2-chain at height {parent.height} conflicts with the "
                f"committed height {self.committed_height}"
            )
        for n in self.tree.commit_through(parent):
            assert n.block is not None and n.qc is not None
            self._out.append(Commit(CommittedBlock(n.block, n.qc)))
        self.pending_qcs = {
            h: q for h, q in self.pending_qcs.items() if q.height > self.committed_height
        }

    # -- views -----------------------------------------------------------------------------

    def _enter_view(self, view: int, via_tc: bool) -> None:
        self.pacemaker.enter(view, via_tc)
        for v in [v for v in self.voters_in_view if v < view - 1]:
            del self.voters_in_view[v]
        for d in [d for d in self.votes if d.view < view - 1]:
            del self.votes[d]
            del self.vote_weight[d]
        self._out.append(SetTimer(TimerKind.VIEW, view, self._now + self.pacemaker.timeout_ms()))
        self._announce_ticket()
        self._reannounce_ticket(view)
        collector = self.pacemaker.collectors.get(view)
        if collector is not None and collector.weight >= self.vset.weak_weight:
            self._join_timeout()
        self._try_propose()

    def _on_timer(self, kind: TimerKind, view: int) -> None:
        if kind is TimerKind.SYNC:
            self._sync_timer_at = None
            self._retry_fetches()
            return
        if view != self.view:
            return
        if kind is TimerKind.PROPOSE:
            self._try_propose()
            return
        self._local_timeout()
        if self.view == view:  # our own timeout may have completed a TC and moved us on
            at = self._now + self.pacemaker.timeout_ms()
            self._out.append(SetTimer(TimerKind.VIEW, view, at))

    def _retry_fetches(self) -> None:
        if self._catch_up is not None and self._now - self._catch_up[1] >= self.fetcher.retry_ms:
            peer, _, attempt = self._catch_up
            self._request_committed(peer, attempt + 1)
        for h in self.fetcher.retries_due(self._now):
            if h in self.tree:
                self.fetcher.done(h)
            else:
                self._fetch(h, self.fetcher.peer_for(h))
        self._arm_sync_timer()

    def _arm_sync_timer(self) -> None:
        due = self.fetcher.next_due_ms()
        if self._catch_up is not None:
            catch_up_due = self._catch_up[1] + self.fetcher.retry_ms
            due = catch_up_due if due is None else min(due, catch_up_due)
        if due is not None and (self._sync_timer_at is None or due < self._sync_timer_at):
            self._sync_timer_at = max(due, self._now + 1)
            self._out.append(SetTimer(TimerKind.SYNC, 0, self._sync_timer_at))

    def _local_timeout(self) -> None:
        """Give up on the current view: sign (or re-send) a timeout and broadcast it."""
        view = self.view
        try:
            state, timeout = self.safety.timeout(
                view, self.pacemaker.high_qc, self.pacemaker.last_tc_for(view)
            )
        except NotSafe:
            # We cannot justify this view (restarted with a newer lock): ask peers for theirs.
            self._out.append(Broadcast(self._sync_info()))
            return
        self._out.append(PersistSafety(state))
        self._out.append(Broadcast(timeout))
        self._add_timeout(timeout)

    def _join_timeout(self) -> None:
        """f + 1 weight gave up on this view, so at least one honest replica did: join it."""
        last = self.safety.state.last_timeout
        if last is None or last.view != self.view:
            self._local_timeout()

    def _sync_info(self) -> SyncInfo:
        return SyncInfo(self.pacemaker.high_qc, self.pacemaker.high_tc)

    def _on_timeout(self, sender: int, t: Timeout) -> None:
        if t.view < self.view:
            if self.pacemaker.high_qc.view >= t.view or (
                self.pacemaker.high_tc is not None and self.pacemaker.high_tc.view >= t.view
            ):
                self._out.append(Send(sender, self._sync_info()))
            return
        if t.view > self.view + MAX_FUTURE_VIEWS:
            self.rejected["timeout too far ahead"] += 1
            return
        collector = self.pacemaker.collector(t.view)
        if t.voter in collector.timeouts:
            return
        self.vset.verify_timeout(t)
        self._process_qc(t.high_qc, sender)
        if t.view >= self.view:
            self._add_timeout(t)

    def _add_timeout(self, t: Timeout) -> None:
        collector = self.pacemaker.collector(t.view)
        if not collector.add(t, self.vset.weight(t.voter)):
            return
        if t.view == self.view and collector.weight >= self.vset.weak_weight:
            self._join_timeout()
        if collector.weight >= self.vset.quorum_weight and (
            self.pacemaker.high_tc is None or self.pacemaker.high_tc.view < t.view
        ):
            self._process_tc(collector.certificate(), t.voter)

    def _on_sync_info(self, sender: int, info: SyncInfo) -> None:
        self.vset.verify_qc(info.high_qc)
        if info.high_tc is not None:
            self.vset.verify_tc(info.high_tc)
        theirs = max(info.high_qc.view, -1 if info.high_tc is None else info.high_tc.view)
        behind = theirs + 1 < self.view
        self._process_qc(info.high_qc, sender)
        if info.high_tc is not None:
            self._process_tc(info.high_tc, sender)
        if behind:
            self._out.append(Send(sender, self._sync_info()))

    # -- proposals -------------------------------------------------------------------------

    def _on_proposal(self, sender: int, p: Proposal) -> None:
        b = p.block
        if not 0 <= b.proposer < self.n:
            self.rejected["unknown proposer"] += 1
            return
        if p.last_tc is not None and p.last_tc.view + 1 != b.view:
            self.rejected["proposal TC is not for the previous view"] += 1
            return
        self.vset.verify_proposal_signature(p)
        self.vset.verify_qc(b.justify)
        if p.last_tc is not None:
            self.vset.verify_tc(p.last_tc)
            self._process_tc(p.last_tc, sender)
        self._process_qc(b.justify, sender)
        if b.view < self.view:
            # Stale. Keep the block only if a certificate we hold names it (we are fetching it:
            # e.g. we formed its QC from votes that overtook the proposal).
            qc_views = {q.view for q in self.pending_qcs.values()} | {self.pacemaker.high_qc.view}
            if b.view in qc_views and b.parent_hash in self.tree:
                h = self._hash(b)
                if h in self.pending_qcs or h == self.pacemaker.high_qc.block_hash:
                    self._consider_proposal(p)
            return
        if b.parent_hash not in self.tree:
            if b.justify.height < self.committed_height:
                self.rejected["proposal below the committed height"] += 1
                return
            self._park(p, sender)
            return
        self._consider_proposal(p)

    def _park(self, p: Proposal, sender: int) -> None:
        waiting = self.parked.setdefault(p.block.parent_hash, [])
        waiting.append(p)
        total = sum(len(v) for v in self.parked.values())
        if total > MAX_PARKED_PROPOSALS:
            oldest = min(self.parked, key=lambda h: self.parked[h][0].block.view)
            self.parked[oldest].pop(0)
            if not self.parked[oldest]:
                del self.parked[oldest]
        self._fetch(p.block.parent_hash, sender)
        self._maybe_catch_up(p.block.justify.height, sender)

    def _hash(self, block: Block) -> bytes:
        return sha256(signing_bytes(DOMAIN_BLOCK, self.chain_id, block.encode()))

    def _check_block(self, b: Block, h: bytes, parent: TreeNode) -> str | None:
        """Rules a block must meet to be stored; None if it meets them, else the reason."""
        if b.epoch != b.view // self.timing.epoch_views:
            return "epoch does not match view"
        if parent.height != b.justify.height or parent.view != b.justify.view:
            return "justify QC does not match the parent"
        if b.timestamp_ms < parent.timestamp_ms:
            return "timestamp before the parent's"
        if len(b.encode()) > limits.MAX_BLOCK_BYTES:
            return "block too large"
        try:
            leader = self.election.leader(b.view, parent)
        except MissingHistory:
            return "missing history to elect the leader"
        if b.proposer != leader:
            return "proposer is not the leader of this view"
        return None

    def _insert(self, b: Block, h: bytes, parent: TreeNode) -> TreeNode:
        node = self.tree.insert(b, h, self.election.verify_block_tickets(b, parent))
        qc = self.pending_qcs.pop(h, None)
        if qc is not None:
            node.qc = qc
        if node.qc is not None:
            self._maybe_commit(node, node.qc)
        # Its justify may close a 2-chain on the parent.
        if parent.qc is not None:
            self._maybe_commit(parent, parent.qc)
        return node

    def _consider_proposal(self, p: Proposal) -> None:
        b = p.block
        h = self._hash(b)
        parent = self.tree.get(b.parent_hash)
        assert parent is not None
        if h in self.tree:
            return
        if self._forks_below_commit(parent):
            self.rejected["proposal forks below the committed block"] += 1
            return
        reason = self._check_block(b, h, parent)
        if reason is not None:
            self.rejected[reason] += 1
            return
        if b.timestamp_ms > self._now + self.timing.max_clock_drift_ms:
            self.rejected["timestamp too far ahead"] += 1
            return
        node = self._insert(b, h, parent)
        self._resume_parked(h)
        if h == self.pacemaker.high_qc.block_hash:
            self.fetcher.done(h)
            self._try_propose()
        if b.view != self.view:
            return
        if not self.app.validate_block(b, parent.block):
            self.rejected["application rejected the block"] += 1
            self._local_timeout()
            return
        try:
            state, vote = self.safety.vote(b, h, p.last_tc)
        except NotSafe as e:
            self.rejected[type(e).__name__] += 1
            return
        self._persist_chain(node)
        self._out.append(PersistSafety(state))
        next_leader = self.election.leader(b.view + 1, node)
        if next_leader == self.index:
            self._add_vote(vote)
        else:
            self._out.append(Send(next_leader, vote))

    def _forks_below_commit(self, parent: TreeNode) -> bool:
        """A block whose parent is committed but is not the last committed block can never be
        committed itself: refuse it before storing (a second line behind the vote rule)."""
        return parent.committed and parent is not self.tree.committed

    def _persist_chain(self, node: TreeNode) -> None:
        """``PersistBlock`` the block we vote for and its uncommitted ancestors not yet stored,
        oldest first, so our lock always names a block some honest disk holds."""
        todo: list[Block] = []
        cur: TreeNode | None = node
        while cur is not None and not cur.committed and cur.hash not in self._persisted:
            assert cur.block is not None
            todo.append(cur.block)
            self._persisted.add(cur.hash)
            cur = self.tree.get(cur.parent) if cur.parent is not None else None
        self._out.extend(PersistBlock(b) for b in reversed(todo))
        if len(self._persisted) > 4 * len(self.tree.uncommitted) + 64:
            self._persisted &= self.tree.uncommitted

    def _resume_parked(self, h: bytes) -> None:
        for p in self.parked.pop(h, []):
            if p.block.view >= self.view:
                self._consider_proposal(p)

    # -- votes -----------------------------------------------------------------------------

    def _on_vote(self, sender: int, vote: Vote) -> None:
        v = vote.data.view
        if v < self.view - 1:
            if self.pacemaker.high_qc.view >= v:
                self._out.append(Send(sender, self._sync_info()))
            return
        if v > self.view + MAX_FUTURE_VIEWS:
            self.rejected["vote too far ahead"] += 1
            return
        if vote.voter in self.voters_in_view.get(v, ()):
            return
        self.vset.verify_vote(vote)
        self._add_vote(vote)

    def _add_vote(self, vote: Vote) -> None:
        d = vote.data
        seen = self.voters_in_view.setdefault(d.view, set())
        if vote.voter in seen:
            return
        seen.add(vote.voter)
        by_voter = self.votes.setdefault(d, {})
        by_voter[vote.voter] = vote
        w = self.vote_weight[d] = self.vote_weight.get(d, 0) + self.vset.weight(vote.voter)
        if (
            w >= self.vset.quorum_weight
            and w - self.vset.weight(vote.voter) < self.vset.quorum_weight
        ):
            signers = tuple(sorted(by_voter))
            qc = QuorumCert(d, signers, tuple(by_voter[s].signature for s in signers))
            committed = self.committed_height
            self._process_qc(qc, vote.voter)
            self._announce_commit(qc, committed)

    def _announce_commit(self, qc: QuorumCert, committed_before: int) -> None:
        """Send a QC that commits transactions to every replica now, not with the next proposal.

        The other replicas would otherwise learn the commit only from the next proposal's
        ``justify``, a block interval later. The QC is already certified, so this is only a
        shortcut: a replica processes it exactly as the proposal's QC (``_on_sync_info``).
        """
        if self.committed_height == committed_before or self.proposed_view >= self.view:
            return  # nothing new committed, or the next proposal (carrying the QC) is out
        tip = self.tree.get(qc.block_hash)
        if tip is None:
            return
        first = committed_before + 1
        for node in self.tree.walk_down(tip, 0):
            if node.height < first:
                break
            if node.committed and node.block is not None and node.block.txs:
                self._out.append(Broadcast(SyncInfo(qc, None)))
                return

    # -- proposing -------------------------------------------------------------------------

    def _busy(self, tip: TreeNode) -> bool:
        """Transactions wait, or a block with transactions is not yet known committed by all.

        The leader itself commits a block as soon as it certifies the child; the other
        replicas learn it only from the next proposal's QC, so the block after the commit is
        still due at the busy pace (else every commit would reach them an idle interval late).
        """
        if self.txs_pending:
            return True
        for depth, node in enumerate(self.tree.walk_down(tip, 0)):
            if node.block is not None and node.block.txs:
                return True
            if node.committed and depth >= 1:
                return False
        return False

    def _try_propose(self) -> None:
        view = self.view
        if self.proposed_view >= view:
            return
        qc = self.pacemaker.high_qc
        tc = self.pacemaker.last_tc_for(view)
        if qc.view + 1 != view and tc is None:
            return
        tip = self.tree.get(qc.block_hash)
        if tip is None:
            self._fetch(qc.block_hash, self.index)
            return
        try:
            if self.election.leader(view, tip) != self.index:
                return
        except MissingHistory:
            return
        if tip.hash == self.follow_at_once:
            # The block interval paces the blocks that gather transactions; the child that
            # commits one follows it at once (with what arrived meanwhile), so a transaction
            # commits about 4 message delays after its block, not a whole interval later.
            self._propose(view, tip, tc, follower=True)
            return
        t = self.timing
        idle_ms = max(t.block_interval_ms, t.view_timeout_ms // 4)
        wait_ms = t.block_interval_ms if self._busy(tip) else idle_ms
        # At least 1 ms apart: a lone validator (its own vote is a quorum) with no block
        # interval would otherwise propose view after view within one event.
        due = self.last_proposal_ms + max(wait_ms, 1)
        if self._now < due:
            self._out.append(SetTimer(TimerKind.PROPOSE, view, due))
            return
        self._propose(view, tip, tc)

    def _propose(
        self, view: int, tip: TreeNode, tc: TimeoutCert | None, follower: bool = False
    ) -> None:
        height = tip.height + 1
        payload = self.app.make_payload(tip.block, height, view, self._now)
        txs = payload.txs[: limits.MAX_BLOCK_TXS]
        qc = self.pacemaker.high_qc
        assert qc.block_hash == tip.hash
        block = Block(
            height=height,
            view=view,
            epoch=view // self.timing.epoch_views,
            parent_hash=tip.hash,
            justify=qc,
            proposer=self.index,
            timestamp_ms=max(self._now, tip.timestamp_ms),
            state_height=payload.state_height,
            state_root=payload.state_root,
            txs=txs,
            tickets=self._tickets_or_none(view, tip),
        )
        while len(block.encode()) > limits.MAX_BLOCK_BYTES and block.txs:
            # The node over-filled the block: keep the longest prefix that fits (the order is
            # the node's, so a prefix is still a valid ordering of its choice).
            block = dataclasses.replace(block, txs=block.txs[: len(block.txs) * 3 // 4])
        signature = self._signer.sign(DOMAIN_PROPOSAL, self.chain_id, block.encode())
        proposal = Proposal(block, tc, signature)
        self.proposed_view = view
        self.follow_at_once = None
        if not follower:
            self.last_proposal_ms = self._now
            if block.txs:
                self.follow_at_once = self._hash(block)
        self.txs_pending = False
        self._out.append(Broadcast(proposal))
        self._consider_proposal(proposal)

    # -- tickets ---------------------------------------------------------------------------

    def _tickets_or_none(self, view: int, tip: TreeNode) -> tuple[VrfTicket, ...]:
        try:
            return self._tickets_for_block(view, tip)
        except MissingHistory:
            return ()

    def _tickets_for_block(self, view: int, tip: TreeNode) -> tuple[VrfTicket, ...]:
        target = view // self.timing.epoch_views + 2
        if not self.ticket_pool:
            return ()
        have = self.election.tickets_on_chain(target, tip)
        chosen: list[VrfTicket] = []
        for (epoch, validator), candidates in sorted(self.ticket_pool.items()):
            if epoch != target or validator in have:
                continue
            for ticket in candidates:
                if self.election.valid_ticket(ticket, tip):
                    chosen.append(ticket)
                    break
            if len(chosen) >= limits.MAX_BLOCK_TICKETS:
                break
        for key in [k for k in self.ticket_pool if k[0] < target]:
            del self.ticket_pool[key]
        return tuple(chosen)

    def _announce_ticket(self) -> None:
        """Once our highest certified block is in epoch e, publish our ticket for e + 2."""
        tip = self.tree.get(self.pacemaker.high_qc.block_hash)
        if tip is None or tip.block is None:
            return
        target = tip.view // self.timing.epoch_views + 2
        try:
            seed = self.election.seed(target, tip)
        except MissingHistory:
            return
        if self.my_tickets.get(target) == seed:
            return
        self.my_tickets[target] = seed
        for old in [e for e in self.my_tickets if e < target - 1]:
            del self.my_tickets[old]
        proof = vrf_prove(self._vrf_seed, self.election.alpha(target, tip))
        ticket = VrfTicket(target, self.index, proof)
        self.my_ticket = ticket
        self._on_ticket(ticket)
        self._out.append(Broadcast(ticket))

    def _reannounce_ticket(self, view: int) -> None:
        """Half-way through each epoch, send our ticket once more (the first may be lost)."""
        e = self.timing.epoch_views
        t = self.my_ticket
        if t is not None and view % e == e // 2 and t.epoch == view // e + 2:
            self._out.append(Broadcast(t))

    def _on_ticket(self, t: VrfTicket) -> None:
        epoch_now = self.view // self.timing.epoch_views
        if not 0 <= t.validator < self.n or not epoch_now <= t.epoch <= epoch_now + 3:
            return
        candidates = self.ticket_pool.get((t.epoch, t.validator))
        if candidates is None:
            if len(self.ticket_pool) >= MAX_TICKET_POOL:
                return
            candidates = self.ticket_pool[(t.epoch, t.validator)] = []
        if t not in candidates and len(candidates) < MAX_TICKET_CANDIDATES:
            candidates.append(t)

    # -- sync ------------------------------------------------------------------------------

    def _fetch(self, block_hash: bytes, preferred: int) -> None:
        req = self.fetcher.want(block_hash, preferred, self._now)
        if req is not None:
            peer = self.fetcher.peer_for(block_hash)
            if peer != self.index:
                self._out.append(Send(peer, req))
            self._arm_sync_timer()

    def _on_block_request(self, sender: int, req: BlockRequest) -> None:
        node = self.tree.get(req.block_hash)
        blocks: list[Block] = []
        size = 0
        while (
            node is not None
            and node.block is not None
            and len(blocks) < min(req.max_blocks, MAX_SYNC_BLOCKS)
        ):
            size += len(node.block.encode()) if len(blocks) else 0
            if size > MAX_SYNC_RESPONSE_BYTES:
                break
            blocks.append(node.block)
            node = self.tree.get(node.parent) if node.parent is not None else None
        self._out.append(Send(sender, BlockResponse(req.block_hash, tuple(blocks))))

    # -- forward catch-up -----------------------------------------------------------------

    def _far_behind(self) -> bool:
        return self.catch_up_target > self.committed_height + MAX_SYNC_BLOCKS

    def _maybe_catch_up(self, height: int, source: int) -> None:
        """A certificate names a block far above our commits: walking back by hash would take
        many round trips, so fetch committed blocks forward from our height instead."""
        self.catch_up_target = max(self.catch_up_target, height)
        if self._far_behind() and self._catch_up is None:
            self._request_committed(source, 0)

    def _request_committed(self, preferred: int, attempt: int) -> None:
        if not self._far_behind() or attempt >= MAX_FETCH_ATTEMPTS:
            self._catch_up = None
            return
        peer = (preferred + (1 if attempt else 0)) % self.n
        if peer == self.index:
            peer = (peer + 1) % self.n
        self._catch_up = (peer, self._now, attempt)
        self._out.append(Send(peer, CommittedRequest(self.committed_height + 1, MAX_SYNC_BLOCKS)))
        self._arm_sync_timer()

    def _on_committed_response(self, sender: int, resp: CommittedResponse) -> None:
        pending = self._catch_up
        if pending is None or pending[0] != sender:
            return  # unsolicited
        before = self.committed_height
        for cb in resp.committed:
            b = cb.block
            if b.height <= self.committed_height:
                continue
            h = self._hash(b)
            if h != cb.qc.block_hash:
                self.rejected["committed block does not match its QC"] += 1
                break
            if h not in self.tree:
                parent = self.tree.get(b.parent_hash)
                if parent is None or parent.height != b.justify.height:
                    self.rejected["committed block does not extend our chain"] += 1
                    break
                self.vset.verify_qc(cb.qc)
                self.vset.verify_qc(b.justify)
                self._insert(b, h, parent)
            node = self.tree.get(h)
            if node is not None and node.qc is None:
                node.qc = cb.qc
            if node is not None:
                self._maybe_commit(node, cb.qc)
            self._process_qc(cb.qc, sender)
        progressed = self.committed_height > before
        self._catch_up = None
        if self._far_behind():
            self._request_committed(sender, 0 if progressed else pending[2] + 1)
        self._try_propose()

    def _on_committed_request(self, sender: int, req: CommittedRequest) -> None:
        out: list[CommittedBlock] = []
        node: TreeNode | None = self.tree.committed
        chain: list[TreeNode] = []
        while node is not None and node.height >= max(req.from_height, 1):
            chain.append(node)
            node = self.tree.get(node.parent) if node.parent is not None else None
        for n in reversed(chain):
            if len(out) >= min(req.max_blocks, MAX_SYNC_BLOCKS) or n.block is None:
                break  # a full response, or a block older than the tree's full window
            assert n.qc is not None
            out.append(CommittedBlock(n.block, n.qc))
        self._out.append(Send(sender, CommittedResponse(tuple(out))))

    def _on_block_response(self, sender: int, resp: BlockResponse) -> None:
        if resp.block_hash not in self.fetcher.pending:
            return
        expected = resp.block_hash
        chain: list[tuple[Block, bytes]] = []
        for b in resp.blocks:
            h = self._hash(b)
            if h != expected:
                self.rejected["sync response does not hash-link"] += 1
                break
            if h in self.tree:
                break
            chain.append((b, h))
            expected = b.parent_hash
        if not chain:
            if resp.block_hash in self.tree:
                self.fetcher.done(resp.block_hash)
            elif not resp.blocks and sender == self.fetcher.peer_for(resp.block_hash):
                # The peer we asked does not have it: ask the next one now.
                self.fetcher.refused(resp.block_hash)
                self._fetch(resp.block_hash, sender)
            return
        self.fetcher.done(resp.block_hash)
        oldest = chain[-1][0]
        if oldest.parent_hash not in self.tree:
            if oldest.height <= self.committed_height + 1 and oldest.parent_hash != (
                self.tree.committed.hash
            ):
                self.rejected["sync response below the committed chain"] += 1
                return
            # Park the hashes we have and keep walking down.
            self._stash_fetched(chain)
            self._fetch(oldest.parent_hash, sender)
            return
        self._insert_fetched(chain)

    def _stash_fetched(self, chain: list[tuple[Block, bytes]]) -> None:
        for b, h in chain:
            if len(self._fetched) < 16 * MAX_SYNC_BLOCKS:
                self._fetched[b.parent_hash] = (b, h)

    def _insert_fetched(self, chain: list[tuple[Block, bytes]]) -> None:
        """Insert certified blocks oldest first, then anything stashed above them."""
        fetched = self._fetched
        queue = list(reversed(chain))
        inserted: list[bytes] = []
        while queue:
            b, h = queue.pop(0)
            parent = self.tree.get(b.parent_hash)
            if parent is None:
                continue
            if h in self.tree:
                nxt = fetched.pop(h, None)
                if nxt is not None and not queue:
                    queue.append(nxt)
                continue
            if parent.height != b.justify.height or parent.view != b.justify.view:
                self.rejected["sync block justify mismatch"] += 1
                return
            try:
                self._insert(b, h, parent)
            except (InvalidTicket, MissingHistory) as e:
                self.rejected[type(e).__name__] += 1
                return
            inserted.append(h)
            self.fetcher.done(h)
            nxt = fetched.pop(h, None)
            if nxt is not None and not queue:
                queue.append(nxt)
        for h in inserted:
            self._resume_parked(h)
        self._try_propose()


def replica_factory(
    genesis: Genesis, verifier: Verifier, app_for: Callable[[int], Application]
) -> Callable[[int, Signer, bytes], Replica]:
    """Build replicas that share one verifier (the simulator's memoising one)."""

    def make(index: int, signer: Signer, vrf_seed: bytes) -> Replica:
        return Replica(genesis, index, signer, vrf_seed, app_for(index), verifier)

    return make
