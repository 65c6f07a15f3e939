"""The replica state machine driven by hand: happy path, effect order, refusals that change
nothing, the application hook, restart, timeouts and sync."""

from __future__ import annotations

import dataclasses
import heapq
from typing import Any

from lockstep.consensus.crypto import DOMAIN_PROPOSAL
from lockstep.consensus.effects import (
    Broadcast,
    Commit,
    PersistBlock,
    PersistSafety,
    Send,
    SetTimer,
)
from lockstep.consensus.events import MessageReceived, PeerConnected, Start, TimerFired, TimerKind
from lockstep.consensus.messages import Block, Proposal, QuorumCert, Timeout, Vote, VoteData
from lockstep.consensus.replica import EmptyApplication, Replica
from lockstep.consensus.sync import (
    MAX_SYNC_BLOCKS,
    BlockRequest,
    BlockResponse,
    CommittedRequest,
    SyncInfo,
    committed_from_store,
)

from .conftest import make_genesis, seed_of

DELAY_MS = 1


class Cluster:
    """Replicas over a 1 ms FIFO network with a discrete clock; ``cut`` drops messages."""

    def __init__(self, n: int = 4, apps: dict[int, Any] | None = None) -> None:
        self.genesis, self.keys = make_genesis(n)
        self.n = n
        self.apps = apps or {}
        self.replicas = [self._make(i) for i in range(n)]
        self.queue: list[tuple[int, int, int, Any]] = []
        self.seq = 0
        self.now = 0
        self.timers: dict[tuple[int, TimerKind], tuple[int, int]] = {}
        self.log: dict[int, list[list[Any]]] = {i: [] for i in range(n)}
        self.commits: dict[int, list[bytes]] = {i: [] for i in range(n)}
        self.stored: dict[int, list[Any]] = {i: [] for i in range(n)}
        """Each node's block store: what it committed, in order (it serves far-behind peers)."""
        self.safety: dict[int, Any] = {}
        self.cut: set[int] = set()
        self.drop = lambda src, dst, msg: False

    def _make(self, i: int) -> Replica:
        app = self.apps.get(i, EmptyApplication())
        return Replica(self.genesis, i, self.keys[i], seed_of(f"vrf-{i}"), app)

    def start(self) -> None:
        for i, r in enumerate(self.replicas):
            self.perform(i, r.handle(Start(self.now)))

    def restart(self, i: int) -> None:
        committed = tuple(self.committed_blocks[i]) if hasattr(self, "committed_blocks") else ()
        self.replicas[i] = self._make(i)
        self.perform(i, self.replicas[i].handle(Start(self.now, self.safety.get(i), committed)))

    def push(self, at: int, i: int, item: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, i, item))

    def perform(self, i: int, effects: list[Any]) -> None:
        self.log[i].append(effects)
        for e in effects:
            if isinstance(e, Send):
                self.send(i, e.to, e.message)
            elif isinstance(e, Broadcast):
                for j in range(self.n):
                    if j != i:
                        self.send(i, j, e.message)
            elif isinstance(e, SetTimer):
                self.timers[(i, e.kind)] = (e.view, e.at_ms)
                self.push(e.at_ms, i, ("timer", e))
            elif isinstance(e, PersistSafety):
                self.safety[i] = e.state
            elif isinstance(e, Commit):
                self.commits[i].append(e.committed.qc.block_hash)
                self.stored[i].append(e.committed)

    def send(self, src: int, dst: int, msg: Any) -> None:
        if src in self.cut or dst in self.cut or self.drop(src, dst, msg):
            return
        self.push(self.now + DELAY_MS, dst, ("msg", src, msg))

    def run_until(self, done, max_ms: int = 60_000) -> None:
        while self.queue and not done():
            at, _, i, item = heapq.heappop(self.queue)
            assert at <= max_ms, "did not converge"
            self.now = at
            r = self.replicas[i]
            if item[0] == "timer":
                e = item[1]
                if self.timers.get((i, e.kind)) != (e.view, e.at_ms):
                    continue
                self.perform(i, r.handle(TimerFired(e.kind, e.view, at)))
            else:
                if i in self.cut:
                    continue
                if isinstance(item[2], CommittedRequest):  # the node's store answers
                    self.send(i, item[1], committed_from_store(self.stored[i], item[2]))
                    continue
                self.perform(i, r.handle(MessageReceived(item[1], item[2], at)))

    def heights(self) -> list[int]:
        return [r.committed_height for r in self.replicas]


def snapshot(r: Replica) -> tuple:
    return (
        r.status(),
        r.safety.state,
        r.pacemaker.high_qc,
        r.pacemaker.high_tc,
        len(r.tree.nodes),
        dict(r.votes),
    )


def test_happy_path_all_commit_the_same_chain() -> None:
    c = Cluster(4)
    c.start()
    c.run_until(lambda: min(c.heights()) >= 6)
    chains = [c.commits[i][:6] for i in range(4)]
    assert all(ch == chains[0] for ch in chains) and len(set(chains[0])) == 6
    assert all(r.rejected == {} for r in c.replicas)


def test_every_vote_leaves_after_its_persist() -> None:
    c = Cluster(4)
    c.start()
    c.run_until(lambda: min(c.heights()) >= 3)
    seen_votes = 0
    for i in range(4):
        for effects in c.log[i]:
            persisted: list[Vote] = []
            for e in effects:
                if isinstance(e, PersistSafety) and e.state.last_vote is not None:
                    persisted.append(e.state.last_vote)
                if isinstance(e, Send) and isinstance(e.message, Vote):
                    assert e.message in persisted, "vote sent before its state was persisted"
                    seen_votes += 1
    assert seen_votes >= 6


def test_votes_go_to_the_next_leader_only() -> None:
    c = Cluster(4)
    c.start()
    c.run_until(lambda: min(c.heights()) >= 2)
    for i in range(4):
        for effects in c.log[i]:
            assert not any(
                isinstance(e, Broadcast) and isinstance(e.message, Vote) for e in effects
            )


def _first_proposal(c: Cluster) -> Proposal:
    for i in range(c.n):
        for effects in c.log[i]:
            for e in effects:
                if isinstance(e, Broadcast) and isinstance(e.message, Proposal):
                    return e.message
    raise AssertionError("no proposal")


def _proposal_cluster() -> tuple[Cluster, Proposal, int]:
    """A cluster whose view-1 proposal was made but delivered to nobody."""
    c = Cluster(4)
    c.drop = lambda src, dst, msg: isinstance(msg, Proposal)
    c.start()
    c.run_until(lambda: any(isinstance(m, Proposal) for m in _broadcasts(c)), max_ms=5_000)
    p = _first_proposal(c)
    target = next(i for i in range(4) if i != p.block.proposer)
    return c, p, target


def _broadcasts(c: Cluster):
    for i in range(c.n):
        for effects in c.log[i]:
            for e in effects:
                if isinstance(e, Broadcast):
                    yield e.message


def test_bad_signature_proposal_is_dropped_and_changes_nothing() -> None:
    c, p, target = _proposal_cluster()
    r = c.replicas[target]
    before = snapshot(r)
    bad = dataclasses.replace(p, signature=bytes(64))
    effects = r.handle(MessageReceived(p.block.proposer, bad, c.now))
    assert effects == [] and r.rejected["BadSignature"] == 1
    assert snapshot(r) == before
    # The genuine one gets a vote.
    effects = r.handle(MessageReceived(p.block.proposer, p, c.now))
    assert [type(e) for e in effects][:3] == [PersistBlock, PersistSafety, Send]
    assert effects[0].block == p.block


def test_proposal_from_a_validator_that_is_not_the_leader_gets_no_vote() -> None:
    c, p, target = _proposal_cluster()
    r = c.replicas[target]
    impostor = next(i for i in range(4) if i not in (p.block.proposer, target))
    b = dataclasses.replace(p.block, proposer=impostor)
    sig = c.keys[impostor].sign(DOMAIN_PROPOSAL, c.genesis.chain_id, b.encode())
    before = snapshot(r)
    effects = r.handle(MessageReceived(impostor, Proposal(b, None, sig), c.now))
    assert effects == []
    assert r.rejected["proposer is not the leader of this view"] == 1
    assert snapshot(r) == before


def test_forged_certificates_are_refused() -> None:
    c, _p, target = _proposal_cluster()
    r = c.replicas[target]
    before = snapshot(r)
    fake = QuorumCert(VoteData(50, 3, b"\x09" * 32), (0, 1, 2), (bytes(64),) * 3)
    assert r.handle(MessageReceived(0, SyncInfo(fake, None), c.now)) == []
    two = QuorumCert(VoteData(50, 3, b"\x09" * 32), (0, 1), (bytes(64),) * 2)
    assert r.handle(MessageReceived(0, SyncInfo(two, None), c.now)) == []
    assert r.rejected["BadSignature"] == 1 and r.rejected["InsufficientWeight"] == 1
    assert snapshot(r) == before


class Rejecting(EmptyApplication):
    def validate_block(self, block: Block, parent: Block | None) -> bool:
        return False


def test_application_rejection_means_no_vote_and_an_immediate_timeout() -> None:
    c = Cluster(4, apps={i: Rejecting() for i in range(4)})
    c.drop = lambda src, dst, msg: isinstance(msg, Proposal)
    c.start()
    c.run_until(lambda: any(isinstance(m, Proposal) for m in _broadcasts(c)), max_ms=5_000)
    p = _first_proposal(c)
    target = next(i for i in range(4) if i != p.block.proposer)
    r = c.replicas[target]
    effects = r.handle(MessageReceived(p.block.proposer, p, c.now))
    assert [type(e) for e in effects] == [PersistSafety, Broadcast]
    assert isinstance(effects[1].message, Timeout) and effects[1].message.view == p.block.view
    assert r.rejected["application rejected the block"] == 1
    assert r.safety.state.last_vote is None


def test_no_second_vote_in_a_view_after_restart() -> None:
    c, p, target = _proposal_cluster()
    r = c.replicas[target]
    effects = r.handle(MessageReceived(p.block.proposer, p, c.now))
    vote = next(e.message for e in effects if isinstance(e, Send))
    c.safety[target] = next(e.state for e in effects if isinstance(e, PersistSafety))
    c.restart(target)
    r2 = c.replicas[target]
    # The leader equivocates: another block for the same view.
    leader = p.block.proposer
    b2 = dataclasses.replace(p.block, timestamp_ms=p.block.timestamp_ms + 1)
    p2 = Proposal(b2, None, c.keys[leader].sign(DOMAIN_PROPOSAL, c.genesis.chain_id, b2.encode()))
    effects = r2.handle(MessageReceived(leader, p2, c.now))
    assert not any(isinstance(e, Send) and isinstance(e.message, Vote) for e in effects)
    assert r2.rejected["NotSafeToVote"] == 1
    # The original block again: the same vote is re-sent, not a new one signed.
    effects = r2.handle(MessageReceived(leader, p, c.now))
    assert [e.message for e in effects if isinstance(e, Send)] == [vote]


def test_a_silent_leader_is_replaced_through_a_timeout_certificate() -> None:
    c = Cluster(4)
    c.drop = lambda src, dst, msg: isinstance(msg, Proposal) and msg.block.view == 1
    c.start()
    c.run_until(lambda: min(c.heights()) >= 2)
    r = c.replicas[0]
    assert r.pacemaker.high_tc is not None and r.pacemaker.high_tc.view == 1
    for i in range(4):
        timeouts = [
            e
            for effects in c.log[i]
            for e in effects
            if isinstance(e, Broadcast) and isinstance(e.message, Timeout)
        ]
        assert timeouts, f"replica {i} never timed out"
    assert len({tuple(c.commits[i][:2]) for i in range(4)}) == 1


def test_a_replica_that_missed_blocks_syncs_and_commits_the_same_chain() -> None:
    c = Cluster(4)
    c.start()
    c.cut = {3}
    c.run_until(lambda: min(c.heights()[:3]) >= 8)
    assert c.replicas[3].committed_height == 0
    c.cut = set()
    requests = []
    orig = c.send

    def spy(src, dst, msg):
        if isinstance(msg, BlockRequest | BlockResponse):
            requests.append((src, dst, type(msg).__name__))
        orig(src, dst, msg)

    c.send = spy
    c.run_until(lambda: c.replicas[3].committed_height >= 10)
    assert any(src == 3 and kind == "BlockRequest" for src, _, kind in requests)
    assert c.commits[3][:8] == c.commits[0][:8]


def test_restart_from_stored_commits_resumes_without_recommitting() -> None:
    c = Cluster(4)
    stored: dict[int, list] = {i: [] for i in range(4)}
    real = c.perform

    def keep(i, effects):
        stored[i].extend(e.committed for e in effects if isinstance(e, Commit))
        real(i, effects)

    c.perform = keep
    c.start()
    c.run_until(lambda: min(c.heights()) >= 5)
    h = c.replicas[2].committed_height
    c.committed_blocks = stored
    before = len(c.commits[2])
    c.restart(2)
    assert c.replicas[2].committed_height == h and len(c.commits[2]) == before
    c.run_until(lambda: c.replicas[2].committed_height >= h + 3)
    assert c.commits[2] == c.commits[0][: len(c.commits[2])]


def test_stale_timeout_gets_the_current_certificates_back() -> None:
    c = Cluster(4)
    c.start()
    c.run_until(lambda: min(c.heights()) >= 3)
    r = c.replicas[0]
    t = Timeout(1, c.replicas[1].vset.genesis_qc, 1, bytes(64))
    effects = r.handle(MessageReceived(1, t, c.now))
    assert len(effects) == 1 and isinstance(effects[0], Send)
    assert isinstance(effects[0].message, SyncInfo) and effects[0].to == 1


def test_events_before_start_are_ignored() -> None:
    g, keys = make_genesis(4)
    r = Replica(g, 0, keys[0], seed_of("vrf-0"), EmptyApplication())
    assert r.handle(TimerFired(TimerKind.VIEW, 1, 0)) == []
    effects = r.handle(Start(0))
    assert any(
        isinstance(e, SetTimer) and e.kind is TimerKind.VIEW and e.view == 1 for e in effects
    )


def test_restart_with_only_recent_history() -> None:
    """The node hands back only its last few epochs of blocks; the replica starts from there."""
    c = Cluster(4)
    stored: dict[int, list] = {i: [] for i in range(4)}
    real = c.perform

    def keep(i, effects):
        stored[i].extend(e.committed for e in effects if isinstance(e, Commit))
        real(i, effects)

    c.perform = keep
    c.start()
    c.run_until(lambda: min(c.heights()) >= 8)
    c.committed_blocks = {i: stored[i][-3:] for i in range(4)}
    h = c.replicas[1].committed_height
    c.restart(1)
    r = c.replicas[1]
    assert r.committed_height == h and r.tree.history_starts_at.height == h - 2
    c.run_until(lambda: c.replicas[1].committed_height >= h + 3)
    assert c.commits[1] == c.commits[0][: len(c.commits[1])]


def test_pacemaker_backoff_and_timeout_certificate() -> None:
    from lockstep.consensus.pacemaker import Pacemaker
    from lockstep.consensus.quorum import genesis_qc

    from .test_quorum import make_tc

    g, keys = make_genesis(4)
    gqc = genesis_qc(g.chain_id)
    pm = Pacemaker(100, 800, gqc)
    assert pm.next_view() == (1, False)
    pm.enter(1, via_tc=False)
    assert pm.timeout_ms() == 100
    for view, expected in [(2, 200), (3, 400), (4, 800), (5, 800)]:
        tc = make_tc(g, keys, view - 1, gqc, {0: 0, 1: 0, 2: 0})
        assert pm.observe_tc(tc)
        assert pm.next_view() == (view, True) and pm.last_tc_for(view) is tc
        pm.enter(view, via_tc=True)
        assert pm.timeout_ms() == expected
    assert not pm.observe_tc(make_tc(g, keys, 2, gqc, {0: 0, 1: 0, 2: 0}))  # not higher
    assert not pm.previous_view_certified()  # the highest QC is older than view 4


def test_a_late_qc_for_the_previous_view_resets_the_backoff() -> None:
    """Entered view 3 through TC(2), then QC(2) arrives (its votes were held up): view 2 did
    succeed, so the next timeout is the base one again, not a doubled one."""
    from lockstep.consensus.messages import QuorumCert, VoteData
    from lockstep.consensus.pacemaker import Pacemaker
    from lockstep.consensus.quorum import genesis_qc

    from .test_quorum import make_tc

    g, keys = make_genesis(4)
    gqc = genesis_qc(g.chain_id)
    pm = Pacemaker(100, 800, gqc)
    pm.enter(1, via_tc=False)
    pm.observe_qc(QuorumCert(VoteData(1, 1, b"b" * 32), (), ()))
    pm.enter(2, via_tc=False)
    pm.observe_tc(make_tc(g, keys, 2, gqc, {0: 0, 1: 0, 2: 0}))
    pm.enter(3, via_tc=True)
    assert pm.timeout_ms() == 200 and not pm.previous_view_certified()
    assert pm.observe_qc(QuorumCert(VoteData(2, 2, b"c" * 32), (), ()))  # unsigned: not checked
    assert pm.next_view()[0] == 3  # no view change: already in 3
    assert pm.previous_view_certified() and pm.timeout_ms() == 100
    assert not pm.previous_view_certified()  # once


def test_timeouts_from_f_plus_one_make_a_replica_join_and_a_quorum_forms_a_tc() -> None:
    from lockstep.consensus.crypto import DOMAIN_TIMEOUT
    from lockstep.consensus.messages import TimeoutData

    c = Cluster(4)
    c.drop = lambda src, dst, msg: True  # isolate everyone; we feed replica 0 by hand
    c.start()
    r = c.replicas[0]
    gqc = r.vset.genesis_qc

    def timeout_from(i: int) -> Timeout:
        sig = c.keys[i].sign(DOMAIN_TIMEOUT, c.genesis.chain_id, TimeoutData(1, 0).encode())
        return Timeout(1, gqc, i, sig)

    assert r.handle(MessageReceived(1, timeout_from(1), 0)) == []  # 1 < f + 1 = 2
    effects = r.handle(MessageReceived(2, timeout_from(2), 0))
    # f + 1 gave up on view 1: replica 0 joins (persist, then broadcast its own timeout).
    assert [type(e) for e in effects[:2]] == [PersistSafety, Broadcast]
    assert effects[1].message.voter == 0 and effects[1].message.view == 1
    # Its own + two others = quorum 3: a TC formed and the replica is in view 2.
    assert r.view == 2 and r.pacemaker.high_tc is not None and r.pacemaker.high_tc.view == 1
    assert r.pacemaker.high_tc.signers == (0, 1, 2)
    # A duplicate from the same signer changes nothing.
    before = snapshot(r)
    assert r.handle(MessageReceived(1, timeout_from(1), 0)) == [
        Send(1, SyncInfo(r.pacemaker.high_qc, r.pacemaker.high_tc))
    ]
    assert snapshot(r) == before


def test_a_single_validator_chain_commits_without_a_network() -> None:
    c = Cluster(1)
    g = c.genesis
    c.genesis = dataclasses.replace(g, timing=dataclasses.replace(g.timing, block_interval_ms=0))
    c.replicas = [c._make(0)]
    c.start()
    c.run_until(lambda: c.replicas[0].committed_height >= 20)
    assert len(c.commits[0]) >= 20 and len(set(c.commits[0])) == len(c.commits[0])


def test_a_replica_far_behind_catches_up_forward_by_height() -> None:
    """Hundreds of blocks behind: walking back by hash would take a round trip per 32 blocks
    and more memory than a replica keeps, so it fetches committed blocks forward instead."""
    from lockstep.consensus.sync import CommittedRequest, CommittedResponse

    c = Cluster(4)
    g = c.genesis
    c.genesis = dataclasses.replace(g, timing=dataclasses.replace(g.timing, view_timeout_ms=200))
    c.replicas = [c._make(i) for i in range(4)]
    c.start()
    c.cut = {3}
    c.run_until(lambda: min(c.heights()[:3]) >= 600, max_ms=10**7)
    assert c.replicas[3].committed_height == 0
    c.cut = set()
    kinds: list[str] = []
    orig = c.send

    def spy(src, dst, msg):
        if isinstance(msg, CommittedRequest | CommittedResponse):
            kinds.append(type(msg).__name__)
        orig(src, dst, msg)

    c.send = spy
    c.run_until(lambda: c.replicas[3].committed_height >= 605, max_ms=10**7)
    assert kinds.count("CommittedRequest") >= 3 and "CommittedResponse" in kinds
    assert c.commits[3][:600] == c.commits[0][:600]


def test_a_reconnected_peer_learns_the_tip_at_once_and_starts_catching_up() -> None:
    """When a session opens, each end sends its certificates (``PeerConnected`` → SyncInfo):
    a node that restarted far behind asks for committed blocks on the greeting's answer, not
    at the next proposal (a heartbeat away on an idle network)."""
    c = Cluster(4)
    c.start()
    c.cut = {3}
    c.run_until(lambda: min(c.heights()[:3]) >= 3 * MAX_SYNC_BLOCKS)
    behind, ahead = c.replicas[3], c.replicas[0]
    greeting = behind.handle(PeerConnected(0, c.now))
    assert greeting == [Send(0, SyncInfo(behind.pacemaker.high_qc, behind.pacemaker.high_tc))]
    answer = ahead.handle(MessageReceived(3, greeting[0].message, c.now))
    assert answer == [Send(3, SyncInfo(ahead.pacemaker.high_qc, ahead.pacemaker.high_tc))]
    asks = behind.handle(MessageReceived(0, answer[0].message, c.now))
    assert Send(0, CommittedRequest(1, MAX_SYNC_BLOCKS)) in asks
    assert behind.handle(PeerConnected(3, c.now)) == []  # itself: nothing to say
    assert behind.handle(PeerConnected(9, c.now)) == []  # not a validator index


class Filling(EmptyApplication):
    """Hands the proposer ``count`` copies of one transaction."""

    def __init__(self, tx, count: int) -> None:
        super().__init__()
        self.tx, self.count = tx, count

    def make_payload(self, parent, height, view, now_ms):
        from lockstep.consensus.replica import Payload

        return Payload((self.tx,) * self.count, self.state_root)


def _filled_cluster(count: int) -> Cluster:
    from lockstep.consensus.actions import Order, OrderType, PlaceOrder, Side, TimeInForce

    g, keys = make_genesis(4)
    trader = keys[4]
    place = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 1, 1, 1)
    tx = Order(trader.public_key, 1, 10**9, place).sign(trader, g.chain_id)
    c = Cluster(4, apps={i: Filling(tx, count) for i in range(4)})
    c.start()
    return c


def test_an_overfull_payload_is_cut_to_the_block_limits() -> None:
    from lockstep.consensus import limits

    c = _filled_cluster(9_000)  # far more bytes than a block may carry
    c.run_until(lambda: min(c.heights()) >= 1)
    p = _first_proposal(c)
    assert 0 < len(p.block.txs) <= limits.MAX_BLOCK_TXS
    assert len(p.block.encode()) <= limits.MAX_BLOCK_BYTES


def test_committed_blocks_stay_whole_only_up_to_a_transaction_budget() -> None:
    """Blocks of 1,500 transactions, as a sequencer under overload proposes: the tree keeps
    whole only the newest committed ones within RETAIN_FULL_TXS (the node serves older ones
    from its block store)."""
    from lockstep.consensus.block_tree import RETAIN_FULL_TXS

    c = _filled_cluster(1_500)
    c.run_until(lambda: min(c.heights()) >= 8)
    for r in c.replicas:
        whole = [n for n in r.tree.nodes.values() if n.committed and n.block is not None]
        assert whole, "the newest committed block stays whole"
        assert sum(len(n.block.txs) for n in whole) <= RETAIN_FULL_TXS
        assert len(whole) < r.committed_height


def test_whole_cluster_restart_resumes_from_locks_and_stored_blocks() -> None:
    """Every replica crashes at once, keeping only what the effects asked it to store: its
    safety state (with its lock QC), its committed blocks and the blocks it voted for. The
    cluster must be able to time out, form a TC and commit again."""
    c = Cluster(4)
    disk: dict[int, dict[str, list]] = {i: {"committed": [], "pending": []} for i in range(4)}
    real = c.perform

    def store(i, effects):
        for e in effects:
            if isinstance(e, Commit):
                disk[i]["committed"].append(e.committed)
            elif isinstance(e, PersistBlock):
                disk[i]["pending"].append(e.block)
        real(i, effects)

    c.perform = store
    c.start()
    c.run_until(lambda: min(c.heights()) >= 5)
    locks = [c.safety[i].locked_view for i in range(4)]
    assert min(locks) > c.replicas[0].tree.committed.view  # locks above the commits
    c.queue.clear()
    for i in range(4):
        c.replicas[i] = c._make(i)
        start = Start(c.now, c.safety[i], tuple(disk[i]["committed"]), tuple(disk[i]["pending"]))
        c.perform(i, c.replicas[i].handle(start))
        r = c.replicas[i]
        assert r.pacemaker.high_qc.view >= c.safety[i].locked_view
        assert r.pacemaker.high_qc.block_hash in r.tree
    h = max(c.heights())
    c.run_until(lambda: min(c.heights()) >= h + 3)
    assert len({tuple(c.commits[i][: h + 3]) for i in range(4)}) == 1
