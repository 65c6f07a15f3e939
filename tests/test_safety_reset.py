"""A lost safety state: the reset learns a floor from peers, and a restarted replica never
votes twice in a view (the deterministic simulator with the real replicas)."""

from __future__ import annotations

import collections
from typing import Any

import pytest
from lockstep.consensus.events import MessageReceived
from lockstep.consensus.messages import QuorumCert, VoteData
from lockstep.consensus.quorum import ValidatorSet
from lockstep.consensus.safety_rules import (
    RESET_PROVEN_MARGIN,
    RESET_VIEW_MARGIN,
    SafetyReset,
    SafetyRules,
    safe_to_timeout,
    safe_to_vote,
)
from lockstep.consensus.sync import SyncInfo
from lockstep.testnet.sim.network import NetworkFaults
from lockstep.testnet.sim.runner import (
    Crash,
    Instance,
    Scenario,
    Simulation,
    SimulationFailure,
    first_sequencer,
    shared_verifier,
)

WEIGHTS = (1, 1, 1, 1)


class LostSafetySimulation(Simulation):
    """The simulator, with the restarted instances' safety state lost on their restart.

    ``reset=False`` boots them as never having voted (what ``SafetyStore.load`` did before it
    told lost from absent); ``reset=True`` runs what ``lockstep node run --reset-safety-state``
    runs: the replica's start waits while a :class:`SafetyReset` reads the messages peers
    send, then starts from the floor it learned and takes the held messages."""

    def __init__(self, scenario: Scenario, reset: bool) -> None:
        super().__init__(scenario, shared_verifier())
        self.reset = reset
        self.learning: dict[int, tuple[SafetyReset, list[Any]]] = {}
        self.resets: list[tuple[int, int]] = []
        """(instance, floor view) of every reset."""
        self.booted: set[int] = set()

    def _boot(self, inst: Instance) -> None:
        if inst.id not in self.booted:
            self.booted.add(inst.id)
            super()._boot(inst)
            return
        inst.safety = None  # both slots lost
        if not self.reset:
            super()._boot(inst)
            return
        top = inst.committed[-1].block.view if inst.committed else 0
        local = max([top, *(b.view for b in inst.pending)])
        vset = ValidatorSet.from_genesis(self.genesis, self.verifier)
        self.learning[inst.id] = (SafetyReset(vset, inst.index, local), [])
        inst.replica = self._new_replica(inst)  # up, but not started: it answers nothing

    def _step(self, kind: str, payload: Any) -> None:
        if kind == "msg" and payload[0] in self.learning:
            inst_id, sender, msg = payload
            reset, held = self.learning[inst_id]
            reset.observe(sender, msg, self.now)
            held.append((sender, msg))
            if reset.ready(self.now):
                del self.learning[inst_id]
                inst = self.instances[inst_id]
                inst.safety = reset.state()
                self.resets.append((inst_id, inst.safety.last_voted_view))
                super()._boot(inst)
                for s, m in held:
                    assert inst.replica is not None
                    self._perform(inst, inst.replica.handle(MessageReceived(s, m, self.now)))
            return
        super()._step(kind, payload)


def _sequencer_restart(seed: int, restart_after_ms: int) -> Scenario:
    """The first sequencer crashes while leading and restarts soon after, in its own epoch:
    it leads the same views again, as the replica that forgot its votes."""
    seq = first_sequencer(WEIGHTS)
    return Scenario(
        seed,
        "crash",
        WEIGHTS,
        NetworkFaults(delay_ms=(1, 10), gst_ms=0),
        crashes=(Crash(seq, 150 + seed % 50, 150 + seed % 50 + restart_after_ms, False),),
        max_ms=8_000,
        commits_after_gst=40,  # counted over incarnations: the run goes on past the restart
    )


def test_a_replica_that_forgot_its_votes_votes_twice_in_a_view() -> None:
    """The control: started as if it never voted, the restarted sequencer re-proposes in a
    view it already voted in and votes for the new block, which the simulator catches."""
    failures = collections.Counter()
    for seed in range(12):
        try:
            LostSafetySimulation(_sequencer_restart(seed, 3), reset=False).run()
        except SimulationFailure as e:
            failures[e.invariant] += 1
    assert failures["one vote per view"] > 0, failures


@pytest.mark.parametrize("seed", range(12))
def test_with_the_reset_no_replica_votes_twice_and_the_chain_goes_on(seed: int) -> None:
    sim = LostSafetySimulation(_sequencer_restart(seed, 3), reset=True)
    result = sim.run()  # a double vote, a fork or a stall raises SimulationFailure
    assert sim.resets, "the restarted replica was reset"
    ((inst_id, floor),) = sim.resets
    assert result.committed_height > 0
    # It voted again, but only above its floor.
    voted = [view for (voter, view) in sim.votes if voter == sim.instances[inst_id].index]
    assert any(v > floor for v in voted)


# ------------------------------------------------------------------------- the learner


def _vset_and_qcs(n_views: int) -> tuple[ValidatorSet, list[QuorumCert]]:
    """A real certificate chain: the simulator's network run for a while, its QCs kept."""
    sim = Simulation(
        Scenario(1, "clean", WEIGHTS, NetworkFaults(), max_ms=3_000, commits_after_gst=n_views),
        shared_verifier(),
    )
    sim.run()
    qcs = sorted({cb.qc for cb in sim.instances[0].committed}, key=lambda q: q.view)
    return ValidatorSet.from_genesis(sim.genesis, sim.verifier), qcs


def test_the_floor_is_the_highest_verified_certificate_plus_the_margin() -> None:
    vset, qcs = _vset_and_qcs(6)
    low, high = qcs[1], qcs[-1]
    reset = SafetyReset(vset, 0, local_view=0)
    reset.observe(1, SyncInfo(low, None), 0)
    assert not reset.ready(0) and not reset.ready(10**6), "one peer of weight 1 is not enough"
    reset.observe(2, SyncInfo(high, None), 10)
    assert not reset.ready(10), "a quorum less our own weight waits for more peers first"
    assert reset.ready(10 + reset.wait_ms)
    assert reset.floor_view == high.view + RESET_VIEW_MARGIN
    reset.observe(3, SyncInfo(low, None), 20)
    assert reset.proven and reset.ready(20)
    state = reset.state()
    assert state.last_voted_view == high.view + RESET_PROVEN_MARGIN
    assert state.lock_qc == high and state.locked_view == high.view
    # Nothing at or below the floor is signed: no vote there, no timeout below it.
    floor = state.last_voted_view
    assert not safe_to_vote(floor, floor - 1, None, floor)
    assert safe_to_vote(floor + 1, floor, None, floor)
    assert not safe_to_timeout(floor - 1, floor - 2, None, state.locked_view, floor)


def test_a_forged_certificate_moves_nothing() -> None:
    """Inflated views would make the node sit out forever: certificates are verified."""
    vset, qcs = _vset_and_qcs(4)
    top = qcs[-1]
    d = top.data
    inflated = VoteData(d.view + 10**9, d.height, d.block_hash)
    forged = QuorumCert(inflated, top.signers, top.signatures)
    reset = SafetyReset(vset, 0, local_view=5)
    for sender in (1, 2, 3):
        reset.observe(sender, SyncInfo(forged, None), 0)
    assert reset.rejected == 3 and not reset.reporters and reset.highest_view == 5
    reset.observe(0, SyncInfo(top, None), 0)  # our own echo is no evidence
    assert not reset.reporters


def test_the_reset_state_signs_nothing_the_lost_one_could_have() -> None:
    vset, qcs = _vset_and_qcs(4)
    reset = SafetyReset(vset, 0)
    for sender in (1, 2, 3):
        reset.observe(sender, SyncInfo(qcs[-1], None), 0)
    state = reset.state()
    rules = SafetyRules(None, 0, vset.chain_id, state)  # type: ignore[arg-type]
    assert rules.state.last_voted_view == qcs[-1].view + RESET_PROVEN_MARGIN
