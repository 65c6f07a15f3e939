"""Scenario runner: real replicas over the simulated network, with invariants on every step.

Theory of operation: a :class:`Scenario` is pure data drawn from a seed (``random_scenario``):
validator count and weights, network faults, crashes, Byzantine behaviours, how long to run.
:class:`Simulation` builds the replicas (sharing one memoising verifier), then pops events from
one heap in time order and feeds each to its replica, performing the returned effects in order:
``PersistSafety`` writes the instance's simulated disk, ``Send``/``Broadcast`` schedule
deliveries, ``SetTimer`` schedules a timer, ``Commit`` appends to the instance's ledger. A crash
can land between two effects of one step, which is how persist-before-send is checked.

Invariants checked on every step (a violation raises :class:`SimulationFailure` carrying the
seed and the last events):

* agreement — no two honest replicas commit different blocks at one height, and each commits
  heights in order without gaps, so every honest committed chain is a prefix of the longest;
* one vote per view — no honest validator signs two different votes in one view, across
  restarts (every vote any honest instance sends is recorded);
* liveness — after GST every running honest replica commits a new block within a bounded
  time and number of views;
* sequencer — in fault-free runs every committed block of an epoch was proposed by that epoch's
  rank-0 sequencer;
* no forgery accepted — at the end every honest replica's highest QC verifies with a
  non-caching verifier.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from lockstep.consensus.actions import Order, OrderType, PlaceOrder, Side, SignedTx, TimeInForce
from lockstep.consensus.block_tree import BlockTree, ConflictingCommit, election_history_blocks
from lockstep.consensus.codec import CodecError
from lockstep.consensus.crypto import Signer, sha256
from lockstep.consensus.effects import (
    Broadcast,
    Commit,
    Effect,
    PersistBlock,
    PersistSafety,
    Send,
    SetTimer,
)
from lockstep.consensus.election import Election
from lockstep.consensus.events import MessageReceived, PeerConnected, Start, TimerFired, TimerKind
from lockstep.consensus.genesis import (
    Account,
    Genesis,
    Timing,
    Validator,
    default_markets,
    default_timing,
)
from lockstep.consensus.messages import Block, Proposal, Vote, VoteData, decode_message
from lockstep.consensus.quorum import CachingVerifier, ValidatorSet, Verifier, genesis_block_hash
from lockstep.consensus.replica import Payload, Replica, ReplicaHalted
from lockstep.consensus.safety_rules import SafetyState
from lockstep.consensus.sync import CommittedBlock, CommittedRequest, committed_from_store
from lockstep.consensus.vrf import vrf_keypair_from_seed

from .byzantine import BEHAVIOURS, Behaviour, make_behaviour
from .network import EventQueue, NetworkFaults, Partition, SimNetwork, block_hash

SIZES = (4, 7, 10, 16)
KINDS = (
    "fork",
    "clean",
    "lossy",
    "crash",
    "partition",
    "equivocate",
    "double_vote",
    "twins",
    "bad_sig",
    "forge",
    "withhold",
    "bad_payload",
    "mixed",
)

SIM_TIMING = Timing(
    view_timeout_ms=100,
    view_timeout_max_ms=800,
    block_interval_ms=10,
    epoch_views=8,
    max_clock_drift_ms=500,
)
"""Simulated milliseconds: short views keep a scenario to a few thousand events."""

LIVENESS_SLACK_VIEWS = 8
"""After GST (or a restart after it) every running honest replica commits within f + 8 views:
at most f views with faulty leaders, one per epoch boundary that lands on a crashed sequencer,
one or two to synchronise views, two consecutive certified views to commit."""

WIRE_ROUNDTRIP = 0.1
"""Share of messages sent through encode + strict decode (the rest travel as objects)."""

TRACE_EVENTS = 40
"""Events kept for the failure report."""


class SimulationFailure(AssertionError):
    def __init__(self, seed: int, invariant: str, detail: str, trace: list[str]) -> None:
        lines = "\n  ".join(trace[-TRACE_EVENTS:])
        super().__init__(
            f"seed {seed}: {invariant} violated: {detail}\n"
            f"replay: python -m lockstep.testnet.sim --seed {seed}\n  {lines}"
        )
        self.seed, self.invariant, self.detail = seed, invariant, detail


# --------------------------------------------------------------------------- genesis cache


@dataclass(frozen=True)
class Network:
    genesis: Genesis
    signers: tuple[Signer, ...]
    vrf_seeds: tuple[bytes, ...]


_NETWORKS: dict[tuple[tuple[int, ...], Timing], Network] = {}


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def build_network(weights: tuple[int, ...], timing: Timing = SIM_TIMING) -> Network:
    key = (weights, timing)
    net = _NETWORKS.get(key)
    if net is None:
        validators, signers, vrf_seeds = [], [], []
        for i, w in enumerate(weights):
            s = Signer(_seed(f"sim-validator-{i}"))
            vrf_seed = _seed(f"sim-vrf-{i}")
            vrf_pk, _ = vrf_keypair_from_seed(vrf_seed)
            validators.append(Validator(s.public_key, vrf_pk, w, f"sim:{i}", f"v{i}"))
            signers.append(s)
            vrf_seeds.append(vrf_seed)
        trader = Signer(_seed("sim-trader"))
        g = Genesis(
            "sim-chain",
            0,
            tuple(validators),
            default_markets(),
            (Account(trader.public_key, 10**12),),
            10**12,
            timing,
        )
        net = _NETWORKS[key] = Network(g, tuple(signers), tuple(vrf_seeds))
    return net


_VERIFIER = CachingVerifier(max_entries=400_000)


def shared_verifier() -> CachingVerifier:
    """One memoising verifier per process (results are pure functions of their inputs)."""
    return _VERIFIER


# --------------------------------------------------------------------------- application


_TX_CACHE: dict[bytes, SignedTx] = {}


def _dummy_tx(chain_id: bytes) -> SignedTx:
    tx = _TX_CACHE.get(chain_id)
    if tx is None:
        trader = Signer(_seed("sim-trader"))
        place = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 600_000, 1, 1)
        tx = _TX_CACHE[chain_id] = Order(trader.public_key, 1, 10**9, place).sign(trader, chain_id)
    return tx


class SimApplication:
    """A node layer stand-in: one transaction per block, a state root chained over parents."""

    def __init__(self, chain_id: bytes, honest: bool = True) -> None:
        self.tx = _dummy_tx(chain_id)
        self.honest = honest

    @staticmethod
    def root_after(parent: Block | None) -> bytes:
        if parent is None:
            return bytes(32)
        return sha256(parent.state_root + parent.height.to_bytes(8, "big"))

    def make_payload(self, parent: Block | None, height: int, view: int, now_ms: int) -> Payload:
        root = self.root_after(parent)
        if not self.honest:
            root = sha256(b"wrong" + root)
        return Payload((self.tx,), root, height - 1)

    def validate_block(self, block: Block, parent: Block | None) -> bool:
        return block.state_root == self.root_after(parent) and block.state_height == (
            block.height - 1
        )


# --------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class Crash:
    instance: int
    at_ms: int
    restart_ms: int | None
    mid_step: bool


@dataclass(frozen=True)
class LeaderCrash:
    """Crash the leader of ``view`` when the first honest replica enters it (``on_proposal``
    False) or right after it broadcasts its proposal for it (True); with ``and_next`` also the
    validator that leads if ``view`` times out; restart them ``restart_after_ms`` later."""

    view: int
    on_proposal: bool = False
    and_next: bool = False
    restart_after_ms: int | None = None


@dataclass(frozen=True)
class Scenario:
    seed: int
    kind: str
    weights: tuple[int, ...]
    faults: NetworkFaults
    byzantine: dict[int, str] = field(default_factory=dict)
    twins: tuple[int, ...] = ()
    crashes: tuple[Crash, ...] = ()
    timing: Timing = SIM_TIMING
    max_ms: int = 30_000
    commits_after_gst: int = 3
    """Stop once every running honest replica has committed this many blocks after GST."""
    check_sequencer: bool = False
    crash_sequencer_at_ms: int | None = None
    """Crash whoever leads the current view at this time (for the failover measurement)."""
    leader_crash: LeaderCrash | None = None
    """Crash the leader of one view, at a chosen point of it (for the crash sweep)."""

    @property
    def n(self) -> int:
        return len(self.weights)

    def describe(self) -> str:
        parts = [f"seed={self.seed}", f"kind={self.kind}", f"n={self.n}"]
        if len(set(self.weights)) > 1:
            parts.append(f"weights={self.weights}")
        if self.byzantine:
            parts.append(f"byzantine={self.byzantine}")
        if self.twins:
            parts.append(f"twins={self.twins}")
        if self.crashes:
            parts.append(f"crashes={len(self.crashes)}")
        f = self.faults
        parts.append(f"drop={f.drop:.2f} dup={f.duplicate:.2f} delay={f.delay_ms} gst={f.gst_ms}")
        if f.partitions:
            parts.append(f"partitions={len(f.partitions)}")
        return " ".join(parts)


LEADER_FAULTS = frozenset(
    {"equivocate", "withhold", "bad_payload", "twins", "forge", "mixed", "fork"}
)
"""Fault kinds that matter most when the faulty validator leads."""


def first_sequencer(weights: tuple[int, ...]) -> int:
    """Rank 0 of epoch 0 (fixed by the genesis: no tickets yet)."""
    g = build_network(weights).genesis
    vs = ValidatorSet.from_genesis(g, shared_verifier())
    tree = BlockTree(genesis_block_hash(g.chain_id), vs.genesis_qc, 0, g.timing.epoch_views)
    return Election(vs, tree, g.timing.epoch_views).ranking(0, tree.genesis)[0]


def max_faulty(weights: tuple[int, ...]) -> int:
    return (sum(weights) - 1) // 3


def random_scenario(seed: int, kind: str | None = None, n: int | None = None) -> Scenario:
    """Draw a scenario from a seed. Faulty weight (Byzantine + crashed at GST) stays ≤ f."""
    rng = random.Random(seed)
    kind = kind or rng.choice(KINDS)
    n = n or rng.choices(SIZES, weights=(5, 3, 2, 1))[0]
    weights = tuple([1] * n) if rng.random() < 0.8 else tuple(rng.randint(1, 3) for _ in range(n))
    f = max_faulty(weights)
    order = list(range(n))
    rng.shuffle(order)
    if kind in LEADER_FAULTS and rng.random() < 0.5:
        # Make the first sequencer faulty half the time, so the fault bites from view 1.
        first = first_sequencer(weights)
        order.remove(first)
        order.insert(0, first)

    def pick_faulty(limit: int) -> list[int]:
        chosen, w = [], 0
        for i in order:
            if len(chosen) >= limit:
                break
            if w + weights[i] <= f and i not in used:
                chosen.append(i)
                w += weights[i]
        used.update(chosen)
        return chosen

    used: set[int] = set()
    gst = rng.randint(300, 1500)
    noisy = NetworkFaults(
        drop=rng.uniform(0.0, 0.3),
        duplicate=rng.uniform(0.0, 0.2),
        delay_ms=(1, rng.randint(10, 150)),
        gst_ms=gst,
    )
    calm = NetworkFaults(delay_ms=(1, 10), gst_ms=0)
    byzantine: dict[int, str] = {}
    twins: tuple[int, ...] = ()
    crashes: list[Crash] = []
    faults = calm
    if kind == "clean":
        return Scenario(seed, kind, weights, calm, commits_after_gst=12, check_sequencer=True)
    if kind == "lossy":
        faults = noisy
    elif kind == "partition":
        parts = []
        t = 0
        isolate_long = rng.random() < 0.25  # one replica cut off long enough to fall far behind
        for _ in range(1 if isolate_long else rng.randint(1, 3)):
            start = t + rng.randint(0, 300)
            end = start + (rng.randint(2_000, 4_000) if isolate_long else rng.randint(100, 600))
            size = 1 if isolate_long else rng.randint(1, n - 1)
            side = set(rng.sample(range(n), size))
            parts.append(Partition(start, end, (frozenset(side), frozenset(set(range(n)) - side))))
            t = end
        faults = NetworkFaults(
            drop=rng.uniform(0, 0.1),
            delay_ms=(1, 10 if isolate_long else 40),
            gst_ms=t + 1,
            partitions=tuple(parts),
        )
    elif kind == "crash":
        faults = noisy if rng.random() < 0.5 else NetworkFaults(delay_ms=(1, 20), gst_ms=gst)
        crashes = _crashes(rng, n, f, weights, gst, used)
    elif kind in BEHAVIOURS:
        for i in pick_faulty(rng.randint(1, max(1, f))):
            byzantine[i] = kind
        faults = noisy if kind == "fork" or rng.random() < 0.3 else calm
    elif kind == "twins":
        twins = tuple(pick_faulty(rng.randint(1, max(1, f))))
        faults = noisy if rng.random() < 0.5 else NetworkFaults(delay_ms=(1, 30), gst_ms=gst)
    elif kind == "mixed":
        faults = noisy
        for i in pick_faulty(rng.randint(0, f)):
            byzantine[i] = rng.choice(BEHAVIOURS)
        crashes = _crashes(rng, n, f - sum(weights[i] for i in byzantine), weights, gst, used)
    return Scenario(
        seed,
        kind,
        weights,
        faults,
        byzantine,
        twins,
        tuple(crashes),
        commits_after_gst=rng.randint(3, 2 * SIM_TIMING.epoch_views),
    )


def _crashes(
    rng: random.Random, n: int, budget: int, weights: tuple[int, ...], gst: int, used: set[int]
) -> list[Crash]:
    """Crashes: any replica may crash and restart before GST; those still down at GST (or
    crashing after it) stay within the fault budget."""
    out = []
    down_weight = 0
    for i in rng.sample(range(n), rng.randint(1, n)):
        if i in used:
            continue
        at = rng.randint(0, gst + 500)
        stays_down = rng.random() < 0.3 or at >= gst
        if stays_down:
            if down_weight + weights[i] > budget:
                continue
            down_weight += weights[i]
            used.add(i)
            restart = None if rng.random() < 0.5 else at + rng.randint(50, 1000)
        else:
            restart = rng.randint(at + 1, gst)
        out.append(Crash(i, at, restart, rng.random() < 0.5))
    return out


# --------------------------------------------------------------------------- simulation


@dataclass
class Instance:
    id: int
    index: int
    honest: bool
    behaviour: Behaviour | None
    replica: Replica | None = None
    incarnation: int = 0
    crash_mid_step: bool = False
    safety: SafetyState | None = None
    committed: list[CommittedBlock] = field(default_factory=list)
    pending: list[Block] = field(default_factory=list)
    """Blocks stored through ``PersistBlock`` (the simulated disk keeps them all)."""
    timers: dict[TimerKind, tuple[int, int]] = field(default_factory=dict)
    commits_after_gst: int = 0
    reference: tuple[int, int] | None = None
    """(time, highest honest view) when liveness is measured from: GST, or a later restart."""
    first_commit_after_gst: tuple[int, int] | None = None
    """(time, view) of the first commit after ``reference``."""


@dataclass
class Result:
    scenario: Scenario
    end_ms: int
    steps: int
    views: int
    committed_height: int
    messages: int
    liveness_views: int
    """Most views any honest replica went through after GST before its first commit."""
    liveness_ms: int
    proposal_sent_ms: dict[bytes, int] = field(default_factory=dict)
    commit_ms: dict[int, dict[bytes, int]] = field(default_factory=dict)
    height_ms: dict[int, int] = field(default_factory=dict)
    """First time any honest replica committed each height."""
    sequencer_crash: tuple[int, int] | None = None
    """(time, validator) of the sequencer crash, if the scenario asked for one."""
    proposers: dict[bytes, int] = field(default_factory=dict)
    gathered: set[bytes] = field(default_factory=set)
    """Blocks whose proposer waited out the block interval for them (not a quick follower)."""


class Simulation:
    def __init__(self, scenario: Scenario, verifier: Verifier | None = None) -> None:
        self.sc = scenario
        self.rng = random.Random(scenario.seed * 7919 + 1)
        self.net_def = build_network(scenario.weights, scenario.timing)
        self.genesis = self.net_def.genesis
        self.chain_id = self.genesis.chain_id
        self.verifier = verifier or shared_verifier()
        self.queue = EventQueue()
        self.network = SimNetwork(scenario.faults, self.rng)
        self.now = 0
        self.steps = 0
        self.trace: collections.deque[str] = collections.deque(maxlen=TRACE_EVENTS)
        self.committed: dict[int, bytes] = {}
        self.votes: dict[tuple[int, int], VoteData] = {}
        self.proposal_sent_ms: dict[bytes, int] = {}
        self.commit_ms: dict[int, dict[bytes, int]] = collections.defaultdict(dict)
        self.height_ms: dict[int, int] = {}
        self.proposers: dict[bytes, int] = {}
        self.gathered: set[bytes] = set()
        self.sequencer_crash: tuple[int, int] | None = None
        self._leader_crash_due = scenario.leader_crash is not None
        self._restarts_due: list[int] = []
        self._current: Instance | None = None
        self.instances: list[Instance] = []
        for i in range(scenario.n):
            name = scenario.byzantine.get(i)
            behaviour = None
            if name is not None:
                behaviour = make_behaviour(
                    name, i, self.net_def.signers[i], self.chain_id, scenario.n, self.rng
                )
            honest = name is None and i not in scenario.twins
            self.instances.append(Instance(len(self.instances), i, honest, behaviour))
            if i in scenario.twins:
                self.instances.append(Instance(len(self.instances), i, False, None))
        self.by_index: dict[int, list[Instance]] = collections.defaultdict(list)
        for inst in self.instances:
            self.by_index[inst.index].append(inst)

    # -- helpers ---------------------------------------------------------------------------

    def fail(self, invariant: str, detail: str) -> None:
        raise SimulationFailure(self.sc.seed, invariant, detail, list(self.trace))

    def _new_replica(self, inst: Instance) -> Replica:
        i = inst.index
        app = SimApplication(self.chain_id, honest=self.sc.byzantine.get(i) != "bad_payload")
        return Replica(
            self.genesis, i, self.net_def.signers[i], self.net_def.vrf_seeds[i], app, self.verifier
        )

    def _boot(self, inst: Instance) -> None:
        inst.replica = self._new_replica(inst)
        if inst.behaviour is not None:
            inst.behaviour.replica = inst.replica
        inst.incarnation += 1
        inst.timers.clear()
        # Like the node: hand back only the recent history the election needs.
        recent = inst.committed[-election_history_blocks(self.sc.timing.epoch_views) :]
        top = inst.committed[-1].block.height if inst.committed else 0
        inst.pending = [b for b in inst.pending if b.height > top]
        start = Start(self.now, inst.safety, tuple(recent), tuple(inst.pending))
        if self.now >= self.sc.faults.gst_ms:
            inst.reference = (self.now, self._highest_view())
            inst.first_commit_after_gst = None
        self._perform(inst, inst.replica.handle(start))

    # -- effects ---------------------------------------------------------------------------

    def _perform(self, inst: Instance, effects: list[Effect]) -> None:
        if inst.behaviour is not None:
            effects = inst.behaviour.outgoing(effects)
        if inst.crash_mid_step and effects:
            cut = self.rng.randint(0, len(effects))
            effects = effects[:cut]
            self._do(inst, effects)
            self._crash(inst)
            return
        self._do(inst, effects)

    def _do(self, inst: Instance, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Send):
                self._record_outgoing(inst, e.message)
                self._transmit(inst, e.to, e.message)
            elif isinstance(e, Broadcast):
                self._record_outgoing(inst, e.message)
                for j in range(self.sc.n):
                    if j != inst.index or len(self.by_index[j]) > 1:
                        self._transmit(inst, j, e.message)
            elif isinstance(e, PersistBlock):
                inst.pending.append(e.block)
            elif isinstance(e, PersistSafety):
                inst.safety = e.state
                if inst.honest and e.state.last_vote is not None:
                    self._record_vote(e.state.last_vote)
            elif isinstance(e, SetTimer):
                inst.timers[e.kind] = (e.view, e.at_ms)
                self.queue.push(max(e.at_ms, self.now), "timer", (inst.id, inst.incarnation, e))
            elif isinstance(e, Commit):
                self._on_commit(inst, e.committed)

    def _transmit(self, inst: Instance, to: int, msg: Any) -> None:
        if self.rng.random() < WIRE_ROUNDTRIP:
            # Through the real codec, as the network layer would: forgeries the decoder
            # refuses never reach the replica.
            try:
                msg = decode_message(msg.encode(), type(msg))
            except CodecError:
                return
        for target in self.by_index[to]:
            if target is inst:
                continue
            for at in self.network.deliveries(self.now, inst.index, to):
                self.queue.push(at, "msg", (target.id, inst.index, msg))

    def _record_outgoing(self, inst: Instance, msg: Any) -> None:
        if isinstance(msg, Proposal):
            h = block_hash(self.chain_id, msg.block)
            self.proposal_sent_ms.setdefault(h, self.now)
            self.proposers.setdefault(h, msg.block.proposer)
            if inst.replica is not None and inst.replica.last_proposal_ms == self.now:
                self.gathered.add(h)
        if not inst.honest or not isinstance(msg, Vote):
            return
        if inst.safety is None or inst.safety.last_voted_view < msg.data.view:
            self.fail(
                "persist before send",
                f"instance {inst.id} sent a vote for view {msg.data.view} before persisting it",
            )
        self._record_vote(msg)

    def _record_vote(self, msg: Vote) -> None:
        key = (msg.voter, msg.data.view)
        prev = self.votes.get(key)
        if prev is None:
            self.votes[key] = msg.data
        elif prev != msg.data:
            self.fail(
                "one vote per view",
                f"validator {msg.voter} voted twice in view {msg.data.view}: {prev} and {msg.data}",
            )

    def _on_commit(self, inst: Instance, cb: CommittedBlock) -> None:
        block = cb.block
        h = cb.qc.block_hash
        inst.committed.append(cb)
        self.trace.append(f"{self.now:>6} i{inst.id} commit h={block.height} v={block.view}")
        if not inst.honest:
            return
        self.commit_ms[inst.index].setdefault(h, self.now)
        expected = inst.committed[-2].block.height + 1 if len(inst.committed) > 1 else 1
        if block.height != expected:
            self.fail(
                "in-order commits",
                f"instance {inst.id} committed height {block.height} after {expected - 1}",
            )
        self.height_ms.setdefault(block.height, self.now)
        known = self.committed.setdefault(block.height, h)
        if known != h:
            self.fail(
                "agreement",
                f"height {block.height}: {known.hex()[:12]} vs {h.hex()[:12]} (instance {inst.id})",
            )
        if self.now >= self.sc.faults.gst_ms:
            inst.commits_after_gst += 1
            if inst.first_commit_after_gst is None and inst.replica is not None:
                inst.first_commit_after_gst = (self.now, inst.replica.view)

    # -- crashes ---------------------------------------------------------------------------

    def _crash(self, inst: Instance) -> None:
        inst.replica = None
        inst.crash_mid_step = False
        inst.incarnation += 1
        inst.timers.clear()
        self.trace.append(f"{self.now:>6} i{inst.id} CRASH")

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> Result:
        sc = self.sc
        for inst in self.instances:
            self._boot(inst)
        for c in sc.crashes:
            self.queue.push(c.at_ms, "crash", c)
            if c.restart_ms is not None:
                self.queue.push(c.restart_ms, "restart", c.instance)
        if sc.crash_sequencer_at_ms is not None:
            self.queue.push(sc.crash_sequencer_at_ms, "crash_sequencer", None)
        gst_marked = False
        while self.queue:
            entry = self.queue.pop()
            self.now = entry.at_ms
            if self.now > sc.max_ms:
                break
            if not gst_marked and self.now >= sc.faults.gst_ms:
                gst_marked = True
                for inst in self.instances:
                    if inst.replica is not None:
                        inst.reference = (self.now, self._highest_view())
            self.steps += 1
            try:
                self._step(entry.kind, entry.payload)
                if self._leader_crash_due:
                    self._maybe_crash_leader()
            except (ReplicaHalted, ConflictingCommit) as e:
                # A replica stopped itself on a broken invariant: a Byzantine one may (it runs
                # honest code on forked state); an honest one means the protocol failed.
                culprit = self._current
                if culprit is not None and culprit.honest:
                    self.fail("replica halted", f"instance {culprit.id}: {e}")
                if culprit is not None:
                    self._crash(culprit)
            if gst_marked and self._done():
                break
        return self._finish()

    def _step(self, kind: str, payload: Any) -> None:
        self._current = None
        if kind in ("msg", "timer"):
            self._current = self.instances[payload[0]]
        if kind == "msg":
            inst_id, sender, msg = payload
            inst = self.instances[inst_id]
            if inst.replica is None:
                return
            self.trace.append(f"{self.now:>6} i{inst_id} <- {sender} {_summary(msg)}")
            if type(msg) is CommittedRequest and inst.honest:
                # As the daemon does: the node's block store answers, not the replica.
                self._transmit(inst, sender, committed_from_store(inst.committed, msg))
                return
            effects = inst.replica.handle(MessageReceived(sender, msg, self.now))
            if inst.behaviour is not None:
                effects = effects + inst.behaviour.incoming(sender, msg)
            self._perform(inst, effects)
        elif kind == "timer":
            inst_id, incarnation, e = payload
            inst = self.instances[inst_id]
            if inst.replica is None or inst.incarnation != incarnation:
                return
            if inst.timers.get(e.kind) != (e.view, e.at_ms):
                return
            self.trace.append(f"{self.now:>6} i{inst_id} timer {e.kind.value} v={e.view}")
            self._perform(inst, inst.replica.handle(TimerFired(e.kind, e.view, self.now)))
        elif kind == "crash":
            c = payload
            inst = self.instances[c.instance]
            if inst.replica is None:
                return
            if c.mid_step:
                inst.crash_mid_step = True
            else:
                self._crash(inst)
        elif kind == "crash_sequencer":
            observer = self._live_honest()[0].replica
            assert observer is not None
            tip = observer.tree.get(observer.pacemaker.high_qc.block_hash)
            assert tip is not None
            leader = observer.election.leader(observer.view, tip)
            self.sequencer_crash = (self.now, leader)
            for inst in self.by_index[leader]:
                if inst.replica is not None:
                    self._crash(inst)
        elif kind == "restart":
            inst = self.instances[payload]
            if inst.replica is not None and inst.crash_mid_step:
                self._crash(inst)  # the mid-step crash had not landed yet
            if inst.replica is None:
                inst.crash_mid_step = False
                self.trace.append(f"{self.now:>6} i{inst.id} RESTART")
                self._boot(inst)
                self._reconnect(inst)

    def _maybe_crash_leader(self) -> None:
        """The sweep's crash: once its view is reached (or proposed in), crash its leader."""
        lc = self.sc.leader_crash
        assert lc is not None
        replicas = [i.replica for i in self._live_honest() if i.replica is not None]
        if lc.on_proposal:
            reached = [r for r in replicas if r.proposed_view >= lc.view]
        else:
            reached = [r for r in replicas if r.view >= lc.view]
        if not reached:
            return
        entered = reached[0]
        tip = entered.tree.get(entered.pacemaker.high_qc.block_hash)
        if tip is None or tip.view >= lc.view:
            return
        self._leader_crash_due = False
        victims = [entered.election.leader(lc.view, tip)]
        if lc.and_next:
            victims.append(entered.election.leader(lc.view + 1, tip))
        self.sequencer_crash = (self.now, victims[0])
        for index in victims:
            for inst in self.by_index[index]:
                if inst.replica is not None:
                    self._crash(inst)
                    if lc.restart_after_ms is not None:
                        self._restarts_due.append(self.now + lc.restart_after_ms)
                        self.queue.push(self.now + lc.restart_after_ms, "restart", inst.id)

    def _reconnect(self, inst: Instance) -> None:
        """As a restarted node's sessions open: each end greets the other (``PeerConnected``)."""
        for other in self.instances:
            if other.index == inst.index or other.replica is None:
                continue
            for a, b in ((inst, other), (other, inst)):
                if a.replica is not None:
                    self._perform(a, a.replica.handle(PeerConnected(b.index, self.now)))

    def _highest_view(self) -> int:
        return max((i.replica.view for i in self._live_honest() if i.replica), default=0)

    def _live_honest(self) -> list[Instance]:
        return [i for i in self.instances if i.honest and i.replica is not None]

    def _done(self) -> bool:
        if self.now < self.sc.faults.gst_ms:
            return False
        pending_restart = any(
            c.restart_ms is not None and c.restart_ms > self.now for c in self.sc.crashes
        )
        if pending_restart or any(at > self.now for at in self._restarts_due):
            return False
        return all(i.commits_after_gst >= self.sc.commits_after_gst for i in self._live_honest())

    def _finish(self) -> Result:
        sc = self.sc
        live = self._live_honest()
        f_views = 0
        f_ms = 0
        for inst in live:
            if inst.commits_after_gst < sc.commits_after_gst:
                self.fail(
                    "liveness",
                    f"instance {inst.id} committed {inst.commits_after_gst} "
                    f"blocks after GST {sc.faults.gst_ms} by {self.now} ms "
                    f"(status {inst.replica.status() if inst.replica else None})",
                )
            if inst.first_commit_after_gst is not None and inst.reference is not None:
                t, v = inst.first_commit_after_gst
                f_views = max(f_views, v - inst.reference[1])
                f_ms = max(f_ms, t - inst.reference[0])
        bound_views = max_faulty(sc.weights) + LIVENESS_SLACK_VIEWS
        if f_views > bound_views:
            self.fail(
                "liveness",
                f"a replica needed {f_views} views after GST (or its restart) "
                f"to commit; the bound is f + {LIVENESS_SLACK_VIEWS} = {bound_views}",
            )
        plain = Verifier()
        for inst in live:
            assert inst.replica is not None
            try:
                inst.replica.vset.verifier = plain
                inst.replica.vset._verified_qcs.clear()
                inst.replica.vset.verify_qc(inst.replica.pacemaker.high_qc)
            except Exception as e:
                self.fail("no forgery accepted", f"instance {inst.id} high QC: {e}")
        if sc.check_sequencer:
            self._check_sequencer(live)
        views = max((i.replica.view for i in live if i.replica is not None), default=0)
        return Result(
            sc,
            self.now,
            self.steps,
            views,
            max(self.committed, default=0),
            self.network.sent,
            f_views,
            f_ms,
            self.proposal_sent_ms,
            dict(self.commit_ms),
            self.height_ms,
            self.sequencer_crash,
            self.proposers,
            self.gathered,
        )

    def _check_sequencer(self, live: list[Instance]) -> None:
        inst = max(live, key=lambda i: i.replica.committed_height if i.replica else -1)
        r = inst.replica
        assert r is not None
        for cb in inst.committed:
            b = cb.block
            parent = r.tree.get(b.parent_hash)
            if parent is None:
                continue
            ranking = r.election.ranking(b.view // r.timing.epoch_views, parent)
            if b.proposer != ranking[0]:
                self.fail(
                    "sequencer leads its epoch",
                    f"block at view {b.view} proposed by "
                    f"{b.proposer}, sequencer of epoch {b.epoch} is {ranking[0]}",
                )


def _summary(msg: Any) -> str:
    name = type(msg).__name__
    if isinstance(msg, Proposal):
        return f"Proposal v={msg.block.view} h={msg.block.height} by {msg.block.proposer}"
    if isinstance(msg, Vote):
        return f"Vote v={msg.data.view} by {msg.voter}"
    view = getattr(msg, "view", None)
    return f"{name} v={view}" if view is not None else name


def run_scenario(scenario: Scenario) -> Result:
    return Simulation(scenario).run()


def run_seed(seed: int, kind: str | None = None, n: int | None = None) -> Result:
    return run_scenario(random_scenario(seed, kind, n))


# --------------------------------------------------------------------------- measurements

LATENCY_TIMING = Timing(
    view_timeout_ms=1_000,
    view_timeout_max_ms=8_000,
    block_interval_ms=0,
    epoch_views=8,
    max_clock_drift_ms=500,
)
"""No batching wait, so latency is pure message delays."""


@dataclass(frozen=True)
class Latency:
    leader_delays: float
    """Median commit latency at the proposer, in message delays."""
    replica_delays: float
    """Median commit latency at the other replicas, in message delays."""
    blocks: int
    gathered_leader_delays: float
    """The same at the proposer for the blocks that gathered transactions for a whole block
    interval (proposed at least an interval after the block before): they hold most of them."""
    gathered_replica_delays: float


def measure_commit_latency(
    n: int, delay_ms: int = 10, blocks: int = 30, block_interval_ms: int = 0
) -> Latency:
    """Fault-free run with every message taking exactly ``delay_ms``: how many message delays
    from a proposal leaving its leader to the block committing."""
    faults = NetworkFaults(delay_ms=(delay_ms, delay_ms), stable_delay_ms=(delay_ms, delay_ms))
    timing = dataclasses.replace(LATENCY_TIMING, block_interval_ms=block_interval_ms)
    sc = Scenario(0, "latency", tuple([1] * n), faults, timing=timing, commits_after_gst=blocks)
    r = run_scenario(sc)
    gathered = r.gathered
    lead: list[float] = []
    other: list[float] = []
    lead_g: list[float] = []
    other_g: list[float] = []
    for index, commits in r.commit_ms.items():
        for h, t in commits.items():
            sent = r.proposal_sent_ms.get(h)
            if sent is None:
                continue
            at_leader = r.proposers.get(h) == index
            (lead if at_leader else other).append((t - sent) / delay_ms)
            if h in gathered:
                (lead_g if at_leader else other_g).append((t - sent) / delay_ms)
    return Latency(
        _median(lead), _median(other), len(lead), _median(lead_g), _median(other_g)
    )


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else float("nan")


@dataclass(frozen=True)
class Failover:
    first_commit_timeouts: float
    """Time from the sequencer crash to the next new height, in base view timeouts."""
    max_gap_timeouts: float
    """Longest gap between consecutive new heights after the crash, in base view timeouts."""


PARTITION_TIMING = default_timing()
"""The testnet's timing, so a heal here is comparable with a chaos run's."""


def measure_partition_heal(seed: int, held_ms: int = 1_000, split_ms: int = 5_000) -> int | None:
    """Four equal validators split 2|2 for ``split_ms``; what crossed the cut is held and
    released per link within ``held_ms`` of the heal, as TCP's retransmissions deliver it.
    Returns milliseconds from the heal to the second new height (None if none came)."""
    rng = random.Random(seed)
    cut = rng.randint(3_000, 4_000)
    heal = cut + split_ms
    order = list(range(4))
    rng.shuffle(order)
    side = frozenset(order[:2])
    split = Partition(cut, heal, (side, frozenset(range(4)) - side), held_ms=held_ms)
    # Stable (for the simulator's liveness bound) once the last held message is delivered.
    faults = NetworkFaults(gst_ms=heal + held_ms, partitions=(split,))
    sc = Scenario(
        seed,
        "held-partition",
        (1, 1, 1, 1),
        faults,
        timing=PARTITION_TIMING,
        max_ms=heal + 20_000,
        commits_after_gst=6,
    )
    r = run_scenario(sc)
    before = max((h for h, t in r.height_ms.items() if t <= heal), default=0)
    reached = r.height_ms.get(before + 2)
    return None if reached is None else reached - heal


@dataclass(frozen=True)
class RestartThenCrash:
    gap_timeouts: float
    """Longest gap between new heights after the second crash, in base view timeouts."""
    gap_timeouts_without_restart: float
    """The same schedule with only the second crash: what that crash costs by itself."""
    missing_history: int
    """Messages the live replicas refused for want of the history to elect a leader."""


def measure_restart_then_crash(seed: int) -> RestartThenCrash:
    """Four validators; one is down for 40 ms (it restarts within the epoch it went down in),
    and 80 ms after its restart another crashes for good. Every view then needs the restarted
    replica's vote, so it must elect the leaders of its epoch from the history it stored."""
    rng = random.Random(seed)
    faults = NetworkFaults(delay_ms=(1, 10), stable_delay_ms=(1, 10))
    restarted, crashed = rng.sample(range(4), 2)
    restart_at = 1_500 + rng.randint(0, 400)
    crash_at = restart_at + 80
    second = Crash(crashed, crash_at, None, False)

    def run(crashes: tuple[Crash, ...]) -> tuple[float, int]:
        sc = Scenario(
            seed, "restart-crash", (1, 1, 1, 1), faults, crashes=crashes, commits_after_gst=300
        )
        sim = Simulation(sc)
        r = sim.run()
        after = sorted(t for t in r.height_ms.values() if t > crash_at)
        gaps = [b - a for a, b in zip([crash_at, *after], after, strict=False)]
        missing = sum(
            i.replica.rejected["missing history to elect the leader"]
            for i in sim.instances
            if i.replica is not None
        )
        return max(gaps) / sc.timing.view_timeout_ms, missing

    gap, missing = run((Crash(restarted, restart_at - 40, restart_at, False), second))
    alone, _ = run((second,))
    return RestartThenCrash(gap, alone, missing)


def measure_sequencer_failover(n: int, seed: int = 0, crash_at_ms: int = 400) -> Failover:
    """Crash whoever leads at ``crash_at_ms`` (+ up to 100 ms) for good; the gaps after it.

    The run lasts 120 commits (~1.5 s, several epochs), so the gaps include the epoch
    boundaries after the crash, where the crashed validator may come first again (with 40 the
    run ended before the crash: blocks come every ~11 ms since followers are proposed at once).
    """
    rng = random.Random(seed)
    faults = NetworkFaults(delay_ms=(1, 10), stable_delay_ms=(1, 10))
    sc = Scenario(
        seed,
        "failover",
        tuple([1] * n),
        faults,
        commits_after_gst=120,
        crash_sequencer_at_ms=crash_at_ms + rng.randint(0, 100),
    )
    r = run_scenario(sc)
    assert r.sequencer_crash is not None
    t_crash = r.sequencer_crash[0]
    after = sorted(t for t in r.height_ms.values() if t > t_crash)
    first = after[0] - t_crash
    gaps = [b - a for a, b in zip([t_crash, *after], after, strict=False)]
    base = sc.timing.view_timeout_ms
    return Failover(first / base, max(gaps) / base)


SWEEP_TIMING = dataclasses.replace(default_timing(), epoch_views=8)
"""The testnet's timing (1 s views, 50 ms block interval), so the sweep's gaps in view timeouts
are the chaos runs' (with 100 ms views, as ``SIM_TIMING``, the message delays and the interval
alone add 0.3 of a timeout), with short epochs so a run crosses several boundaries."""
SWEEP_EPOCH = 3
"""The sweep crashes a leader in this epoch: past the first epochs, so tickets decide the
rankings and a blamed leader's three epochs of demotion run out within the run."""
SWEEP_EPOCHS_AFTER = 4
"""Epochs the sweep runs past the crash: the demotion window and one epoch beyond it."""


@dataclass(frozen=True)
class CrashGap:
    offset: int
    """View offset of the crashed leader's view within its epoch (0: the epoch's first)."""
    gap_timeouts: float
    """Longest time without a new height, from the last before the crash to the end of the
    run, in base view timeouts."""


def measure_leader_crash(
    n: int,
    offset: int,
    on_proposal: bool = False,
    and_next: bool = False,
    restart_after_ms: int | None = None,
    seed: int = 0,
) -> CrashGap:
    """Crash the leader of view ``start(SWEEP_EPOCH) + offset`` (and, ``and_next``, the one
    that takes over), keep running ``SWEEP_EPOCHS_AFTER`` epochs: the worst commit gap."""
    e = SWEEP_TIMING.epoch_views
    view = SWEEP_EPOCH * e + offset
    faults = NetworkFaults(delay_ms=(1, 10), stable_delay_ms=(1, 10))
    crash = LeaderCrash(view, on_proposal, and_next, restart_after_ms)
    sc = Scenario(
        seed,
        "leader-crash",
        tuple([1] * n),
        faults,
        timing=SWEEP_TIMING,
        max_ms=120_000,
        commits_after_gst=view + SWEEP_EPOCHS_AFTER * e,
        leader_crash=crash,
    )
    r = run_scenario(sc)
    assert r.sequencer_crash is not None, "the run ended before the crash"
    t_crash = r.sequencer_crash[0]
    times = sorted(r.height_ms.values())
    before = [t for t in times if t <= t_crash]
    after = [t for t in times if t > t_crash]
    series = [before[-1] if before else 0, *after]
    gaps = [b - a for a, b in itertools.pairwise(series)]
    return CrashGap(offset, max(gaps) / sc.timing.view_timeout_ms)


def crash_sweep(
    n: int, and_next: bool = False, restart_after_ms: int | None = None, seed: int = 0
) -> list[CrashGap]:
    """``measure_leader_crash`` at every view offset of an epoch, both crash points (on
    entering the view, after proposing in it); the worse of the two per offset."""
    out = []
    for offset in range(SWEEP_TIMING.epoch_views):
        gaps = [
            measure_leader_crash(n, offset, on_proposal, and_next, restart_after_ms, seed)
            for on_proposal in (False, True)
        ]
        out.append(max(gaps, key=lambda g: g.gap_timeouts))
    return out
