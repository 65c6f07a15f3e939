"""Quorum weights and certificate verification: each check refuses what it must, and nothing
it refuses is remembered as verified."""

from __future__ import annotations

import dataclasses

import pytest
from lockstep.consensus.crypto import DOMAIN_TIMEOUT, DOMAIN_VOTE, Signer
from lockstep.consensus.genesis import Genesis, Validator
from lockstep.consensus.messages import (
    QuorumCert,
    Timeout,
    TimeoutCert,
    TimeoutData,
    Vote,
    VoteData,
)
from lockstep.consensus.quorum import (
    BadSignature,
    CachingVerifier,
    DuplicateSigner,
    InsufficientWeight,
    InvalidCertificate,
    UnknownSigner,
    ValidatorSet,
    Verifier,
    genesis_block_hash,
    genesis_qc,
)

from .conftest import make_genesis


def vset_for(n: int) -> tuple[ValidatorSet, list[Signer], Genesis]:
    g, keys = make_genesis(n)
    return ValidatorSet.from_genesis(g, Verifier()), keys[:n], g


def make_qc(g: Genesis, keys: list[Signer], data: VoteData, signers: list[int]) -> QuorumCert:
    signers = sorted(signers)
    sigs = tuple(keys[i].sign(DOMAIN_VOTE, g.chain_id, data.encode()) for i in signers)
    return QuorumCert(data, tuple(signers), sigs)


def make_tc(
    g: Genesis, keys: list[Signer], view: int, high_qc: QuorumCert, reports: dict[int, int]
) -> TimeoutCert:
    signers = tuple(sorted(reports))
    sigs = tuple(
        keys[i].sign(DOMAIN_TIMEOUT, g.chain_id, TimeoutData(view, reports[i]).encode())
        for i in signers
    )
    return TimeoutCert(view, high_qc, signers, tuple(reports[i] for i in signers), sigs)


def forged(obj, **changes):
    """Bypass the constructor's structural checks, as a forger's encoder would."""
    new = object.__new__(type(obj))
    for f in dataclasses.fields(obj):
        object.__setattr__(new, f.name, changes.get(f.name, getattr(obj, f.name)))
    return new


DATA = VoteData(5, 3, b"\x07" * 32)


@pytest.mark.parametrize(("n", "f", "quorum"), [(4, 1, 3), (7, 2, 5), (10, 3, 7), (16, 5, 11)])
def test_quorum_is_two_f_plus_one(n: int, f: int, quorum: int) -> None:
    vs, _, _ = vset_for(n)
    assert (vs.max_faulty_weight, vs.quorum_weight, vs.weak_weight) == (f, quorum, f + 1)


def test_weighted_quorum_intersects_in_an_honest_validator() -> None:
    g, keys = make_genesis(4)
    weights = (5, 1, 1, 3)
    vals = tuple(
        dataclasses.replace(v, weight=w) for v, w in zip(g.validators, weights, strict=True)
    )
    g2 = dataclasses.replace(g, validators=vals)
    vs = ValidatorSet.from_genesis(g2, Verifier())
    assert (vs.total_weight, vs.max_faulty_weight, vs.quorum_weight) == (10, 3, 7)
    assert 2 * vs.quorum_weight - vs.total_weight >= vs.max_faulty_weight + 1
    make = lambda s: make_qc(g2, keys, DATA, s)  # noqa: E731
    vs.verify_qc(make([0, 3]))  # 5 + 3 = 8 ≥ 7
    with pytest.raises(InsufficientWeight) as e:
        vs.verify_qc(make([0, 1]))  # 6 < 7
    assert (e.value.weight, e.value.quorum) == (6, 7)


def test_genesis_qc_is_valid_and_nothing_else_at_view_zero() -> None:
    vs, _, g = vset_for(4)
    vs.verify_qc(genesis_qc(g.chain_id))
    assert genesis_qc(g.chain_id).block_hash == genesis_block_hash(g.chain_id)
    other = QuorumCert(VoteData(0, 0, b"\x01" * 32), (), ())
    with pytest.raises(InvalidCertificate):
        vs.verify_qc(other)


def test_qc_with_quorum_of_valid_signatures_verifies() -> None:
    vs, keys, g = vset_for(4)
    vs.verify_qc(make_qc(g, keys, DATA, [0, 1, 3]))
    vs.verify_qc(make_qc(g, keys, DATA, [0, 1, 2, 3]))


@pytest.mark.parametrize("n", [4, 7, 10, 16])
def test_qc_with_2f_signatures_is_refused(n: int) -> None:
    vs, keys, g = vset_for(n)
    f = vs.max_faulty_weight
    qc = make_qc(g, keys, DATA, list(range(2 * f)))
    with pytest.raises(InsufficientWeight) as e:
        vs.verify_qc(qc)
    assert (e.value.weight, e.value.quorum) == (2 * f, 2 * f + 1)
    assert not vs._verified_qcs


def test_qc_with_a_duplicate_signer_is_refused() -> None:
    vs, keys, g = vset_for(4)
    good = make_qc(g, keys, DATA, [0, 1, 2])
    # Signer 1 twice stands in for a missing third validator: weight would look like 3.
    dup = forged(
        good, signers=(0, 1, 1), signatures=(good.signatures[0],) + good.signatures[1:2] * 2
    )
    with pytest.raises(DuplicateSigner) as e:
        vs.verify_qc(dup)
    assert e.value.index == 1
    # The decoder refuses it too (structural rule in messages.py).
    with pytest.raises(ValueError):
        QuorumCert(DATA, (0, 1, 1), dup.signatures)


def test_qc_with_an_unknown_signer_is_refused() -> None:
    vs, keys, g = vset_for(4)
    good = make_qc(g, keys, DATA, [0, 1, 2])
    bad = forged(good, signers=(0, 1, 9))
    with pytest.raises(UnknownSigner) as e:
        vs.verify_qc(bad)
    assert (e.value.index, e.value.n_validators) == (9, 4)


def test_qc_with_one_bad_signature_is_refused() -> None:
    vs, keys, g = vset_for(4)
    good = make_qc(g, keys, DATA, [0, 1, 2])
    sigs = list(good.signatures)
    sigs[2] = bytes([sigs[2][0] ^ 1]) + sigs[2][1:]
    with pytest.raises(BadSignature) as e:
        vs.verify_qc(dataclasses.replace(good, signatures=tuple(sigs)))
    assert e.value.signer == 2


def test_qc_signatures_do_not_transfer_to_other_data() -> None:
    vs, keys, g = vset_for(4)
    good = make_qc(g, keys, DATA, [0, 1, 2])
    with pytest.raises(BadSignature):
        vs.verify_qc(dataclasses.replace(good, data=VoteData(5, 3, b"\x08" * 32)))


def test_qc_signed_on_another_chain_is_refused() -> None:
    vs, keys, g = vset_for(4)
    other = dataclasses.replace(g, chain_name="other-chain")
    qc = make_qc(other, keys, DATA, [0, 1, 2])
    with pytest.raises(BadSignature):
        vs.verify_qc(qc)


def test_tc_verifies_and_each_defect_is_refused() -> None:
    vs, keys, g = vset_for(4)
    hqc = make_qc(g, keys, VoteData(4, 2, b"\x05" * 32), [0, 1, 2])
    tc = make_tc(g, keys, 6, hqc, {0: 4, 1: 3, 3: 4})
    vs.verify_tc(tc)

    sigs = list(tc.signatures)
    sigs[1] = bytes(64)
    with pytest.raises(BadSignature) as e:
        vs.verify_tc(dataclasses.replace(tc, signatures=tuple(sigs)))
    assert e.value.signer == 1

    small = make_tc(g, keys, 6, hqc, {0: 4, 1: 4})
    with pytest.raises(InsufficientWeight):
        vs.verify_tc(small)

    # A signer's reported QC view is part of what it signed: changing it breaks the signature.
    lied = forged(tc, high_qc_views=(4, 4, 4))
    with pytest.raises(BadSignature):
        vs.verify_tc(lied)

    # The carried high QC must be the highest reported (here a lower one is swapped in).
    lower = make_qc(g, keys, VoteData(3, 1, b"\x04" * 32), [0, 1, 2])
    with pytest.raises(InvalidCertificate):
        vs.verify_tc(forged(tc, high_qc=lower))

    # And it must itself be a valid QC.
    weak_hqc = make_qc(g, keys, VoteData(4, 2, b"\x05" * 32), [0, 1])
    with pytest.raises(InsufficientWeight):
        vs.verify_tc(make_tc(g, keys, 6, weak_hqc, {0: 4, 1: 3, 3: 4}))


def test_vote_and_timeout_signatures() -> None:
    vs, keys, g = vset_for(4)
    vote = Vote(DATA, 2, keys[2].sign(DOMAIN_VOTE, g.chain_id, DATA.encode()))
    vs.verify_vote(vote)
    with pytest.raises(BadSignature):
        vs.verify_vote(dataclasses.replace(vote, voter=1))
    hqc = genesis_qc(g.chain_id)
    t = Timeout(3, hqc, 1, keys[1].sign(DOMAIN_TIMEOUT, g.chain_id, TimeoutData(3, 0).encode()))
    vs.verify_timeout(t)
    with pytest.raises(BadSignature):
        vs.verify_timeout(dataclasses.replace(t, view=4))


def test_caching_verifier_caches_forgeries_as_forgeries() -> None:
    g, keys = make_genesis(4)
    cv = CachingVerifier()
    vs = ValidatorSet.from_genesis(g, cv)
    good = make_qc(g, keys, DATA, [0, 1, 2])
    bad = dataclasses.replace(good, signatures=(bytes(64), *good.signatures[1:]))
    for _ in range(2):
        with pytest.raises(BadSignature):
            vs.verify_qc(bad)
    vs.verify_qc(good)
    assert cv.hits >= 1 and cv.misses == 4


def test_single_validator_set_needs_its_one_signature() -> None:
    g, keys = make_genesis(1)
    vs = ValidatorSet.from_genesis(g, Verifier())
    assert (vs.quorum_weight, vs.max_faulty_weight) == (1, 0)
    vs.verify_qc(make_qc(g, keys, DATA, [0]))
    assert isinstance(g.validators[0], Validator)
