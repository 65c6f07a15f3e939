"""Safety rules refuse every vote and timeout they must, survive a restart, and re-send rather
than re-sign. A refusal leaves the state exactly as it was."""

from __future__ import annotations

import pytest
from lockstep.consensus.codec import decode
from lockstep.consensus.crypto import DOMAIN_VOTE
from lockstep.consensus.messages import Block, QuorumCert, TimeoutCert, VoteData
from lockstep.consensus.quorum import ValidatorSet, Verifier, genesis_qc
from lockstep.consensus.safety_rules import (
    NotSafeToTimeout,
    NotSafeToVote,
    SafetyRules,
    SafetyState,
    safe_to_timeout,
    safe_to_vote,
)

from .conftest import make_genesis
from .test_quorum import make_qc, make_tc

G, KEYS = make_genesis(4)
CHAIN = G.chain_id
VS = ValidatorSet.from_genesis(G, Verifier())
GQC = genesis_qc(CHAIN)


def block(view: int, justify: QuorumCert, salt: int = 0) -> Block:
    return Block(
        height=justify.height + 1,
        view=view,
        epoch=0,
        parent_hash=justify.block_hash,
        justify=justify,
        proposer=0,
        timestamp_ms=salt,
        state_height=0,
        state_root=bytes(32),
        txs=(),
        tickets=(),
    )


def certify(b: Block) -> QuorumCert:
    return make_qc(G, KEYS, VoteData(b.view, b.height, b.block_hash(CHAIN)), [0, 1, 2])


def rules(state: SafetyState | None = None) -> SafetyRules:
    return SafetyRules(KEYS[3], 3, CHAIN, state or SafetyState.initial())


def persist_and_reload(state: SafetyState) -> SafetyState:
    return decode(state.encode(), SafetyState, max_bytes=1 << 20)


def test_first_vote_updates_state_and_is_valid() -> None:
    r = rules()
    b1 = block(1, GQC)
    state, vote = r.vote(b1, b1.block_hash(CHAIN), None)
    assert state == SafetyState(1, 0, vote, None, None) == r.state
    assert vote.data == VoteData(1, 1, b1.block_hash(CHAIN)) and vote.voter == 3
    VS.verify_vote(vote)
    assert vote.signature == KEYS[3].sign(DOMAIN_VOTE, CHAIN, vote.data.encode())


def test_second_vote_in_a_view_is_refused_and_changes_nothing() -> None:
    r = rules()
    a, b = block(1, GQC, salt=1), block(1, GQC, salt=2)
    r.vote(a, a.block_hash(CHAIN), None)
    before = r.state
    with pytest.raises(NotSafeToVote) as e:
        r.vote(b, b.block_hash(CHAIN), None)
    assert (e.value.view, e.value.qc_view, e.value.last_voted_view) == (1, 0, 1)
    assert r.state is before


def test_asking_again_for_the_same_vote_returns_the_identical_vote() -> None:
    r = rules()
    a = block(1, GQC)
    s1, v1 = r.vote(a, a.block_hash(CHAIN), None)
    s2, v2 = r.vote(a, a.block_hash(CHAIN), None)
    assert (s1, v1) == (s2, v2) and v1 is v2


def test_second_vote_in_a_view_after_restart_is_refused() -> None:
    r = rules()
    a, b = block(1, GQC, salt=1), block(1, GQC, salt=2)
    state, vote = r.vote(a, a.block_hash(CHAIN), None)
    restarted = rules(persist_and_reload(state))
    with pytest.raises(NotSafeToVote):
        restarted.vote(b, b.block_hash(CHAIN), None)
    assert restarted.state == state
    # Asked again for the vote it already sent, it re-sends that same vote.
    assert restarted.vote(a, a.block_hash(CHAIN), None) == (state, vote)


def test_vote_for_an_older_view_is_refused() -> None:
    r = rules()
    b1 = block(1, GQC)
    r.vote(b1, b1.block_hash(CHAIN), None)
    b2 = block(2, certify(b1))
    r.vote(b2, b2.block_hash(CHAIN), None)
    stale = block(1, GQC, salt=9)
    with pytest.raises(NotSafeToVote):
        r.vote(stale, stale.block_hash(CHAIN), None)


def test_vote_needs_the_previous_views_qc_or_a_tc() -> None:
    r = rules()
    skip = block(3, GQC)  # QC view 0, block view 3, no TC
    with pytest.raises(NotSafeToVote) as e:
        r.vote(skip, skip.block_hash(CHAIN), None)
    assert (e.value.view, e.value.qc_view, e.value.tc_view, e.value.hqc_view) == (3, 0, None, None)
    assert r.state == SafetyState.initial()
    tc = make_tc(G, KEYS, 2, GQC, {0: 0, 1: 0, 2: 0})
    r.vote(skip, skip.block_hash(CHAIN), tc)
    assert r.state.last_voted_view == 3


def test_vote_for_a_conflicting_block_below_the_lock_is_refused() -> None:
    """Replica 3 voted for b2 on top of QC(b1): it is locked on view 1 and its timeouts report
    it. A TC built from those reports carries the lock; a block after it that extends genesis
    (conflicting with b1) is refused."""
    r = rules()
    b1 = block(1, GQC)
    qc1 = certify(b1)
    b2 = block(2, qc1)
    r.vote(b2, b2.block_hash(CHAIN), None)
    assert r.state.locked_view == 1 and r.state.lock_qc == qc1
    _, timeout = r.timeout(3, qc1, make_tc(G, KEYS, 2, GQC, {0: 0, 1: 0, 2: 0}))
    assert timeout.high_qc == qc1
    tc3 = make_tc(G, KEYS, 3, qc1, {0: 0, 1: 1, 3: 1})
    conflicting = block(4, GQC, salt=7)
    before = r.state
    with pytest.raises(NotSafeToVote) as e:
        r.vote(conflicting, conflicting.block_hash(CHAIN), tc3)
    assert (e.value.view, e.value.qc_view, e.value.tc_view, e.value.hqc_view) == (4, 0, 3, 1)
    assert r.state is before
    extends = block(4, qc1)
    r.vote(extends, extends.block_hash(CHAIN), tc3)


def test_timeout_below_the_lock_is_refused() -> None:
    r = rules()
    b1 = block(1, GQC)
    qc1 = certify(b1)
    b2 = block(2, qc1)
    r.vote(b2, b2.block_hash(CHAIN), None)
    tc2 = make_tc(G, KEYS, 2, GQC, {0: 0, 1: 0, 2: 0})
    with pytest.raises(NotSafeToTimeout) as e:
        r.timeout(3, GQC, tc2)  # reports QC view 0 < lock 1
    assert (e.value.view, e.value.qc_view, e.value.locked_view) == (3, 0, 1)


def test_no_vote_after_timing_out_in_a_view() -> None:
    r = rules()
    state, timeout = r.timeout(1, GQC, None)
    assert state == SafetyState(1, 0, None, timeout, None)
    VS.verify_timeout(timeout)
    b1 = block(1, GQC)
    with pytest.raises(NotSafeToVote):
        r.vote(b1, b1.block_hash(CHAIN), None)


def test_vote_then_timeout_in_the_same_view_keeps_the_vote() -> None:
    r = rules()
    b1 = block(1, GQC)
    _, vote = r.vote(b1, b1.block_hash(CHAIN), None)
    state, timeout = r.timeout(1, GQC, None)
    assert state.last_vote == vote and state.last_timeout == timeout
    assert r.vote(b1, b1.block_hash(CHAIN), None)[1] == vote  # re-send, not re-sign


def test_timeout_is_idempotent_and_survives_restart() -> None:
    r = rules()
    s1, t1 = r.timeout(1, GQC, None)
    assert r.timeout(1, GQC, None) == (s1, t1)
    restarted = rules(persist_and_reload(s1))
    assert restarted.timeout(1, GQC, None)[1] == t1


def test_timeout_for_an_unjustified_or_old_view_is_refused() -> None:
    r = rules()
    with pytest.raises(NotSafeToTimeout):
        r.timeout(2, GQC, None)  # view 2 needs QC(1) or TC(1)
    b1 = block(1, GQC)
    qc1 = certify(b1)
    r.vote(block(2, qc1), block(2, qc1).block_hash(CHAIN), None)
    r.timeout(2, qc1, None)
    with pytest.raises(NotSafeToTimeout):
        r.timeout(1, GQC, None)


@pytest.mark.parametrize(
    ("view", "qc_view", "tc", "last", "ok"),
    [
        (1, 0, None, 0, True),
        (2, 0, None, 0, False),
        (1, 0, None, 1, False),
        (5, 3, (4, 3), 0, True),
        (5, 2, (4, 3), 0, False),
        (5, 3, (3, 2), 0, False),
    ],
)
def test_safe_to_vote_table(view, qc_view, tc, last, ok) -> None:
    cert = None
    if tc is not None:
        hqc = QuorumCert(VoteData(tc[1], 1, b"\x01" * 32), (0,), (bytes(64),))
        cert = TimeoutCert(tc[0], hqc, (0,), (tc[1],), (bytes(64),))
    assert safe_to_vote(view, qc_view, cert, last) is ok


@pytest.mark.parametrize(
    ("view", "qc_view", "tc_view", "locked", "last", "ok"),
    [
        (1, 0, None, 0, 0, True),
        (1, 0, None, 0, 1, True),
        (1, 0, None, 1, 1, False),
        (3, 1, 2, 1, 2, True),
        (3, 1, None, 1, 2, False),
        (3, 1, 2, 1, 4, False),
    ],
)
def test_safe_to_timeout_table(view, qc_view, tc_view, locked, last, ok) -> None:
    cert = None
    if tc_view is not None:
        hqc = QuorumCert(VoteData(0, 0, b"\x01" * 32), (), ())
        cert = TimeoutCert(tc_view, hqc, (0,), (0,), (bytes(64),))
    assert safe_to_timeout(view, qc_view, cert, locked, last) is ok


def test_safety_state_encodes_canonically() -> None:
    r = rules()
    b1 = block(1, GQC)
    state, _ = r.vote(b1, b1.block_hash(CHAIN), None)
    assert persist_and_reload(state) == state
    assert SafetyState.initial().encode() == persist_and_reload(SafetyState.initial()).encode()
