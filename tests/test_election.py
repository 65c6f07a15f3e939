"""Sequencer election: the ranking is a pure function of the chain, VRF tickets decide it, a
timed-out view hands leadership to the next in rank, and bad tickets are refused."""

from __future__ import annotations

import dataclasses
import random

import pytest
from lockstep.consensus.block_tree import BlockTree
from lockstep.consensus.election import (
    Election,
    InvalidTicket,
    draw_value,
    fallback_draw,
    rank_by_draw,
)
from lockstep.consensus.messages import Block, QuorumCert, VoteData, VrfTicket
from lockstep.consensus.quorum import ValidatorSet, Verifier, genesis_block_hash, genesis_qc
from lockstep.consensus.vrf import vrf_proof_to_hash, vrf_prove

from .conftest import make_genesis, seed_of

E = 4  # views per epoch in these tests


def setup(n: int = 4):
    g, _keys = make_genesis(n)
    g = dataclasses.replace(g, timing=dataclasses.replace(g.timing, epoch_views=E))
    vs = ValidatorSet.from_genesis(g, Verifier())
    tree = BlockTree(genesis_block_hash(g.chain_id), genesis_qc(g.chain_id), 0, E)
    return g, vs, tree, Election(vs, tree, E)


def child(g, tree, parent_hash: bytes, view: int, tickets=(), proposer: int = 0):
    parent = tree.get(parent_hash)
    qc = QuorumCert(VoteData(parent.view, parent.height, parent.hash), (), ())
    b = Block(
        height=parent.height + 1,
        view=view,
        epoch=view // E,
        parent_hash=parent.hash,
        justify=qc,
        proposer=proposer,
        timestamp_ms=view,
        state_height=0,
        state_root=bytes(32),
        txs=(),
        tickets=tuple(tickets),
    )
    return b


def add(g, tree, el, parent_hash, view, tickets=(), proposer=None):
    """A block at ``view`` on ``parent_hash``, proposed by its leader unless told otherwise."""
    if proposer is None:
        proposer = el.leader(view, tree.get(parent_hash))
    b = child(g, tree, parent_hash, view, tickets, proposer)
    h = b.block_hash(g.chain_id)
    return tree.insert(b, h, el.verify_block_tickets(b, tree.get(parent_hash)))


def ticket(g, el, tree, tip, validator: int, epoch: int) -> VrfTicket:
    proof = vrf_prove(seed_of(f"vrf-{validator}"), el.alpha(epoch, tip))
    return VrfTicket(epoch, validator, proof)


def test_rank_by_draw_is_exact_integer_weighted_order() -> None:
    # draw/weight: 10/1 = 10, 30/5 = 6, 12/2 = 6 (tie → lower index), 7/1 = 7
    assert rank_by_draw([(10, 1, 0), (30, 5, 1), (12, 2, 2), (7, 1, 3)]) == (1, 2, 3, 0)


def test_heavier_validators_lead_more_often() -> None:
    rng = random.Random(1)
    wins = [0, 0]
    for _ in range(4000):
        draws = [(draw_value(rng.randbytes(64)), w, i) for i, w in enumerate((1, 3))]
        wins[rank_by_draw(draws)[0]] += 1
    assert wins[1] > 2 * wins[0]


def test_ranking_is_a_permutation_and_the_same_on_every_replica() -> None:
    g, _, tree_a, el_a = setup(7)
    _, _, tree_b, el_b = setup(7)
    ha = hb = genesis_block_hash(g.chain_id)
    for view in range(1, 20):
        ha = add(g, tree_a, el_a, ha, view).hash
        hb = add(g, tree_b, el_b, hb, view).hash
    assert ha == hb
    for epoch in range(6):
        ra = el_a.ranking(epoch, tree_a.get(ha))
        assert sorted(ra) == list(range(7))
        assert ra == el_b.ranking(epoch, tree_b.get(hb))


def test_fallback_ranking_without_tickets_follows_the_seed() -> None:
    _g, _vs, tree, el = setup(4)
    gen = tree.genesis
    seed = el.seed(0, gen)
    expected = rank_by_draw([(draw_value(fallback_draw(seed, i)), 1, i) for i in range(4)])
    assert el.ranking(0, gen) == expected
    assert el.seed(0, gen) != el.seed(1, gen)


def test_leader_rotates_one_rank_per_timed_out_view() -> None:
    g, _, tree, el = setup(4)
    gen = tree.genesis
    r = el.ranking(0, gen)
    b1 = add(g, tree, el, gen.hash, 1)
    b2 = add(g, tree, el, b1.hash, 2)
    assert el.leader(1, gen) == r[0]  # no gap before view 1
    assert el.leader(3, b2) == r[0]  # healthy: the sequencer keeps leading
    assert el.leader(4 - 1, b1) == r[1]  # view 2 timed out on b1's chain
    # Next epoch: the count restarts at the epoch's first view.
    b3 = add(g, tree, el, b2.hash, 3)
    r1 = el.ranking(1, b3)
    assert el.leader(4, b3) == r1[0]
    assert el.leader(6, b3) == r1[2]  # views 4 and 5 timed out


def test_after_a_timed_out_last_view_both_its_suspects_rank_last_in_the_next_epoch() -> None:
    """View 3, epoch 0's last, timed out after its leader's block at view 2: that leader, or
    the next epoch's sequencer (who was to certify view 3's block), is down. Both rank last
    in epoch 1, so the first view of epoch 1 is led by someone who is neither; neither is
    blamed in epoch 2."""
    g, _, tree, el = setup(4)
    b2 = chain(g, tree, el, [1, 2])
    r1 = el.ranking(1, b2)
    suspects = {b2.proposer, r1[0]}
    assert el.demoted(1, b2) == suspects
    first = el.leader(4, b2)
    assert first not in suspects
    assert el.order(1, b2)[: 4 - len(suspects)] == tuple(i for i in r1 if i not in suspects)
    tip = chain(g, tree, el, range(4, 8), start=b2)
    assert {n.proposer for n in tree.walk_down(tip, 4)} == {first}
    assert el.demoted(2, tip) == frozenset()


def test_tickets_on_chain_decide_the_ranking() -> None:
    g, _vs, tree, el = setup(4)
    gen = tree.genesis
    # Epoch 0 blocks carry tickets for epoch 2 (TICKET_LEAD_EPOCHS = 2).
    b1 = add(g, tree, el, gen.hash, 1)
    tickets = [ticket(g, el, tree, b1, i, 2) for i in range(4)]
    b2 = add(g, tree, el, b1.hash, 2, tickets)
    assert set(b2.tickets) == {0, 1, 2, 3}
    tip = b2
    for view in range(3, 9):
        tip = add(g, tree, el, tip.hash, view)
    betas = {i: vrf_proof_to_hash(t.proof) for i, t in enumerate(tickets)}
    expected = rank_by_draw([(draw_value(betas[i]), 1, i) for i in range(4)])
    assert el.ranking(2, tip) == expected
    # Blocks of epoch 1 and 2 do not change epoch 2's ranking once the window is closed.
    assert el.ranking(2, tree.get(tip.parent)) == expected


def test_one_withheld_ticket_falls_back_for_that_validator_only() -> None:
    g, _vs, tree, el = setup(4)
    gen = tree.genesis
    b1 = add(g, tree, el, gen.hash, 1)
    tickets = [ticket(g, el, tree, b1, i, 2) for i in (0, 1, 3)]
    b2 = add(g, tree, el, b1.hash, 2, tickets)
    seed = el.seed(2, b2)
    draws = {
        i: draw_value(vrf_proof_to_hash(t.proof)) for i, t in zip((0, 1, 3), tickets, strict=True)
    }
    draws[2] = draw_value(fallback_draw(seed, 2))
    expected = rank_by_draw([(draws[i], 1, i) for i in range(4)])
    assert el.ranking(2, add(g, tree, el, b2.hash, 5)) == expected


@pytest.mark.parametrize("defect", ["epoch", "validator", "proof", "duplicate", "other_key"])
def test_bad_tickets_are_refused(defect: str) -> None:
    g, _vs, tree, el = setup(4)
    gen = tree.genesis
    b1 = add(g, tree, el, gen.hash, 1)
    good = ticket(g, el, tree, b1, 1, 2)
    if defect == "epoch":
        bad = [ticket(g, el, tree, b1, 1, 3)]
    elif defect == "validator":
        bad = [dataclasses.replace(good, validator=3)]  # 3's key does not verify 1's proof
    elif defect == "proof":
        bad = [dataclasses.replace(good, proof=good.proof[:-1] + bytes([good.proof[-1] ^ 1]))]
    elif defect == "duplicate":
        bad = [good, good]
    else:
        bad = [VrfTicket(2, 1, vrf_prove(seed_of("vrf-2"), el.alpha(2, b1)))]
    b = child(g, tree, b1.hash, 2, bad)
    with pytest.raises(InvalidTicket):
        el.verify_block_tickets(b, b1)
    assert b.block_hash(g.chain_id) not in tree


def test_ticket_for_another_seed_does_not_verify() -> None:
    """A validator cannot choose its output: a proof for any other input fails."""
    g, _vs, tree, el = setup(4)
    gen = tree.genesis
    b1 = add(g, tree, el, gen.hash, 1)
    wrong_alpha = el.alpha(3, b1)  # epoch 3's input, presented as epoch 2's ticket
    t = VrfTicket(2, 0, vrf_prove(seed_of("vrf-0"), wrong_alpha))
    assert not el.valid_ticket(t, b1)
    assert el.valid_ticket(ticket(g, el, tree, b1, 0, 2), b1)


def test_seed_depends_only_on_blocks_before_the_ticket_window() -> None:
    g, _vs, tree, el = setup(4)
    gen = tree.genesis
    tip = gen
    for view in range(1, 4 * E):
        tip = add(g, tree, el, tip.hash, view)
    # seed_5 uses epoch-4 tickets, which ride in epoch-2 blocks: fixed once epoch 3 starts.
    at_start_of_3 = next(n for n in tree.walk_down(tip, 0) if n.view == 3 * E)
    assert el.seed(5, tip) == el.seed(5, at_start_of_3)


def chain(g, tree, el, views, start=None):
    """Blocks at ``views`` in order, each on the one before (from genesis unless told)."""
    tip = start or tree.genesis
    for view in views:
        tip = add(g, tree, el, tip.hash, view)
    return tip


def test_a_leader_whose_view_times_out_is_demoted_for_three_epochs() -> None:
    """Epoch 1 (views 4-7): view 5 times out after its leader's block at 4; that leader is
    blamed (it led view 5 and was to certify its block) and ranks last in epochs 2, 3, 4."""
    g, _, tree, el = setup(4)
    tip = chain(g, tree, el, [1, 2, 3, 4])
    failed = tip.proposer
    tip = chain(g, tree, el, [6, 7], start=tip)
    assert tip.proposer != failed  # the backup took over after one timed-out view
    for epoch in (2, 3, 4):
        tip = chain(g, tree, el, range(epoch * E, epoch * E + E), start=tip)
        assert el.demoted(epoch, tip) == {failed}
        assert el.order(epoch, tip)[-1] == failed
        assert tip.proposer != failed
    assert el.demoted(5, tip) == frozenset()
    assert el.order(5, tip) == el.ranking(5, tip)


def test_demotion_keeps_the_vrf_order_of_everyone_else() -> None:
    ranking = (3, 1, 0, 2)
    assert el_order(ranking, {1}) == (3, 0, 2, 1)
    assert el_order(ranking, {3, 2}) == (1, 0, 3, 2)
    assert el_order(ranking, frozenset()) == ranking


def el_order(ranking, demoted):
    from lockstep.consensus.election import reputation_order

    return reputation_order(ranking, frozenset(demoted))


def test_a_timeout_at_an_epochs_last_view_blames_no_one() -> None:
    """The block of an epoch's last view is certified by the next epoch's sequencer, so a
    timeout there does not say whose fault it was: no record."""
    g, _, tree, el = setup(4)
    b6 = chain(g, tree, el, [1, 2, 3, 4, 5, 6])  # view 7 (epoch 1's last) times out
    tip = chain(g, tree, el, range(8, 16), start=b6)
    assert el.demoted(2, tip) == {b6.proposer, el.ranking(2, b6)[0]}  # suspects, this epoch
    assert el.demoted(3, tip) == frozenset()
    assert el.demoted(4, tip) == frozenset()


def test_reputation_is_the_same_from_a_restarted_history() -> None:
    """A replica restarted with only its newest ``election_history_blocks`` committed blocks
    computes the same demotions and leaders: the records need only the blocks themselves."""
    from lockstep.consensus.block_tree import election_history_blocks

    g, _, tree, el = setup(4)
    timed_out = {4 * E + 1, 5 * E + 1}  # in epochs 4 and 5
    tip = chain(g, tree, el, [v for v in range(1, 7 * E) if v not in timed_out])
    blamed = {n.proposer for n in tree.walk_down(tip, 0) if n.view + 1 in timed_out}
    blocks = [n.block for n in tree.walk_down(tip, 0) if n.block is not None][::-1]
    recent = blocks[-election_history_blocks(E) :]
    _, _, tree2, el2 = setup(4)
    first = recent[0]
    node = tree2.add_root(first, first.block_hash(g.chain_id), {})
    for b in recent[1:]:
        node = tree2.insert(b, b.block_hash(g.chain_id), {})
    assert node.hash == tip.hash
    for epoch in (6, 7):
        assert el2.demoted(epoch, node) == el.demoted(epoch, tip)
        assert el2.order(epoch, node) == el.order(epoch, tip)
        assert el.demoted(epoch, tip) == blamed
