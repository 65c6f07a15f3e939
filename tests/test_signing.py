"""Domain-separated Ed25519: a signature of one kind or chain verifies as no other."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lockstep.consensus import crypto
from lockstep.consensus.actions import (
    TX_BODIES,
    Cancel,
    CancelOrder,
    Order,
    OrderType,
    PlaceOrder,
    Side,
    SignedTx,
    TimeInForce,
    decode_and_verify_tx,
)
from lockstep.consensus.crypto import ALL_DOMAINS, SignatureError, Signer, verify
from lockstep.consensus.messages import TimeoutData, VoteData

from .conftest import seed_of
from .strategies import for_struct

CHAIN_A = crypto.sha256(b"chain-a")
CHAIN_B = crypto.sha256(b"chain-b")
ALICE = Signer(seed_of("alice"))
BOB = Signer(seed_of("bob"))


def test_no_domain_tag_is_a_prefix_of_another() -> None:
    for a, b in itertools.permutations(ALL_DOMAINS, 2):
        assert not b.startswith(a)


@pytest.mark.parametrize("signed_as", ALL_DOMAINS, ids=lambda d: d.decode().strip("\x00"))
def test_signature_verifies_only_as_its_kind_and_chain(signed_as: bytes) -> None:
    body = VoteData(7, 3, b"\x11" * 32).encode()
    sig = ALICE.sign(signed_as, CHAIN_A, body)
    verify(ALICE.public_key, sig, signed_as, CHAIN_A, body)
    for other in ALL_DOMAINS:
        for chain in (CHAIN_A, CHAIN_B):
            if (other, chain) == (signed_as, CHAIN_A):
                continue
            with pytest.raises(SignatureError):
                verify(ALICE.public_key, sig, other, chain, body)
    with pytest.raises(SignatureError):
        verify(BOB.public_key, sig, signed_as, CHAIN_A, body)


def test_vote_signature_is_not_a_timeout_signature() -> None:
    # VoteData(view, height, hash) and TimeoutData(view, qc_view) are different shapes, but even
    # an identical body would not verify across kinds: the domain tag differs.
    body = TimeoutData(5, 4).encode()
    sig = ALICE.sign(crypto.DOMAIN_VOTE, CHAIN_A, body)
    with pytest.raises(SignatureError):
        verify(ALICE.public_key, sig, crypto.DOMAIN_TIMEOUT, CHAIN_A, body)


def _order() -> Order:
    place = PlaceOrder(1, Side.SELL, OrderType.LIMIT, TimeInForce.GTC, False, 300_000, 2, 9)
    return Order(ALICE.public_key, 77, 500, place)


def test_signed_tx_round_trip_and_id() -> None:
    tx = _order().sign(ALICE, CHAIN_A)
    decoded, tx_id = decode_and_verify_tx(tx.encode(), CHAIN_A)
    assert decoded == tx
    assert tx_id == tx.tx_id(CHAIN_A) == crypto.sha256(tx.signing_bytes(CHAIN_A))
    assert tx.tx_id(CHAIN_A) != tx.tx_id(CHAIN_B)
    assert tx.verify(CHAIN_A) == tx_id


def test_tx_from_another_chain_rejected() -> None:
    tx = _order().sign(ALICE, CHAIN_B)
    with pytest.raises(SignatureError):
        decode_and_verify_tx(tx.encode(), CHAIN_A)


def test_tx_signed_as_another_kind_rejected() -> None:
    """A cancel whose signature was made under the ORDER domain does not verify."""
    body = Cancel(ALICE.public_key, 1, 10, CancelOrder(0, 5))
    sig = ALICE.sign(crypto.DOMAIN_ORDER, CHAIN_A, body.encode())
    with pytest.raises(SignatureError):
        SignedTx(body, sig).verify(CHAIN_A)


def test_tampered_tx_rejected() -> None:
    tx = _order().sign(ALICE, CHAIN_A)
    raw = bytearray(tx.encode())
    raw[-70] ^= 0x01  # a byte of the body, just before the signature
    with pytest.raises((SignatureError, ValueError)):
        decode_and_verify_tx(bytes(raw), CHAIN_A)


def test_sign_refuses_foreign_signer() -> None:
    with pytest.raises(ValueError, match="does not match"):
        _order().sign(BOB, CHAIN_A)


@settings(max_examples=30, deadline=None)
@given(body=st.one_of([for_struct(b) for b in TX_BODIES]), data=st.data())
def test_every_body_kind_signs_under_its_own_domain_only(body, data) -> None:  # type: ignore[no-untyped-def]
    signer = Signer(data.draw(st.binary(min_size=32, max_size=32)))
    body = type(body)(**{**{f: getattr(body, f) for f, _ in body._WIRE_FIELDS},
                         "signer": signer.public_key})  # fmt: skip
    tx = body.sign(signer, CHAIN_A)
    assert decode_and_verify_tx(tx.encode(), CHAIN_A)[0] == tx
    for other in ALL_DOMAINS:
        if other != body.DOMAIN:
            with pytest.raises(SignatureError):
                verify(signer.public_key, tx.signature, other, CHAIN_A, body.encode())
