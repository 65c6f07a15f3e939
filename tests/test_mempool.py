"""The mempool: order, duplicates, bounds, expiry; a refusal changes nothing."""

from __future__ import annotations

from lockstep.consensus.actions import Cancel, CancelAll, SignedTx
from lockstep.consensus.crypto import Signer, sha256
from lockstep.node.mempool import Mempool, PendingTx, PoolReason

from .conftest import seed_of

CHAIN = sha256(b"chain")
ALICE = Signer(seed_of("alice"))
BOB = Signer(seed_of("bob"))


def tx(signer: Signer, nonce: int, expiry: int = 100) -> PendingTx:
    signed: SignedTx = Cancel(signer.public_key, nonce, expiry, CancelAll(0)).sign(signer, CHAIN)
    raw = signed.encode()
    return PendingTx(signed.tx_id(CHAIN), signed, raw, 0)


def snapshot(pool: Mempool) -> tuple[list[bytes], int]:
    return [p.tx_id for p in pool.take(10**6, 10**9, 0)], pool.bytes


def test_fifo_take_and_remove() -> None:
    pool = Mempool()
    txs = [tx(ALICE, n) for n in range(5)]
    for t in txs:
        assert pool.add(t) is PoolReason.OK
    assert [p.tx_id for p in pool.take(3, 10**6, 0)] == [t.tx_id for t in txs[:3]]
    assert len(pool) == 5  # take does not remove
    assert pool.remove([txs[0].tx_id, txs[2].tx_id, b"unknown"]) == 2
    assert [p.tx_id for p in pool.take(10, 10**6, 0)] == [t.tx_id for t in (txs[1], txs[3], txs[4])]


def test_duplicates_refused_without_change() -> None:
    pool = Mempool()
    a = tx(ALICE, 1)
    pool.add(a)
    before = snapshot(pool)
    assert pool.add(a) is PoolReason.ALREADY_KNOWN
    same_nonce = tx(ALICE, 1, expiry=99)  # different tx id, same replay key
    assert pool.add(same_nonce) is PoolReason.NONCE_PENDING
    assert snapshot(pool) == before
    assert pool.add(tx(BOB, 1)) is PoolReason.OK  # nonces are per signer


def test_bounds() -> None:
    pool = Mempool(max_txs=3, max_per_signer=2)
    assert pool.add(tx(ALICE, 1)) is PoolReason.OK
    assert pool.add(tx(ALICE, 2)) is PoolReason.OK
    assert pool.add(tx(ALICE, 3)) is PoolReason.SIGNER_PENDING_LIMIT
    assert pool.add(tx(BOB, 1)) is PoolReason.OK
    assert pool.add(tx(BOB, 2)) is PoolReason.MEMPOOL_FULL
    one = tx(ALICE, 9)
    small = Mempool(max_bytes=len(one.raw) * 2 - 1)
    assert small.add(one) is PoolReason.OK
    assert small.add(tx(BOB, 9)) is PoolReason.MEMPOOL_FULL


def test_take_respects_bytes_and_expiry() -> None:
    pool = Mempool()
    old, fresh = tx(ALICE, 1, expiry=5), tx(ALICE, 2, expiry=50)
    pool.add(old)
    pool.add(fresh)
    assert [p.tx_id for p in pool.take(10, 10**6, 6)] == [fresh.tx_id]
    assert pool.take(10, len(fresh.raw) - 1, 6) == []
    assert pool.drop_expired(6) == [old.tx_id]
    assert len(pool) == 1 and pool.bytes == len(fresh.raw)
    assert pool.add(tx(ALICE, 1, expiry=60)) is PoolReason.OK  # its nonce is free again


def test_a_committed_transaction_is_refused_until_applied() -> None:
    """Between its commit and its application a transaction is in no pool and in no result: a
    copy gossiped then must not be pending again (the sequencer would propose it twice)."""
    pool = Mempool()
    a, b = tx(ALICE, 1), tx(ALICE, 2)
    assert pool.add(a) == PoolReason.OK
    pool.commit([a.tx_id, b.tx_id])  # b was committed without ever being pending here
    assert a.tx_id not in pool and len(pool) == 0 and pool.bytes == 0
    assert pool.add(a) == pool.add(b) == PoolReason.INCLUDED
    assert pool.is_included(a.tx_id) and pool.is_included(b.tx_id)
    pool.applied([a.tx_id, b.tx_id])
    assert not pool.is_included(a.tx_id)
    assert pool.add(a) == PoolReason.OK  # from here on the node's results refuse it
