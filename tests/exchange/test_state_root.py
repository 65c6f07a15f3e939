"""The state root: incremental updates equal a from-scratch computation; it commits to every
record; the construction is pinned by a known-answer vector."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import cbor2
from lockstep.consensus.crypto import DOMAIN_STATE
from lockstep.node.exchange.state_root import (
    EMPTY_BUCKET,
    FANOUT,
    N_BUCKETS,
    StateTree,
    bucket_of,
    full_root,
    leaf_hash,
)

from .test_executor import BUY, SELL, USD, Harness


def reference_root(records: dict[bytes, tuple]) -> bytes:
    """A second, plain implementation written from the protocol text."""
    buckets: list[list[tuple[bytes, bytes]]] = [[] for _ in range(N_BUCKETS)]
    for key, value in records.items():
        b = int.from_bytes(hashlib.sha256(key).digest()[:4], "big") % N_BUCKETS
        leaf = hashlib.sha256(b"\x00" + cbor2.dumps([key, *value], canonical=True)).digest()
        buckets[b].append((key, leaf))
    level = [hashlib.sha256(b"\x01" + b"".join(h for _, h in sorted(bk))).digest()
             for bk in buckets]
    while len(level) > 1:
        level = [hashlib.sha256(b"\x02" + b"".join(level[i:i + FANOUT])).digest()
                 for i in range(0, len(level), FANOUT)]
    return hashlib.sha256(DOMAIN_STATE + level[0]).digest()


def test_empty_tree_matches_reference() -> None:
    assert StateTree().root() == reference_root({})
    assert hashlib.sha256(b"\x01").digest() == EMPTY_BUCKET


def test_incremental_equals_scratch_and_reference() -> None:
    rng = random.Random(1)
    tree = StateTree()
    state: dict[bytes, tuple] = {}
    for _ in range(30):
        changes = []
        for _ in range(rng.randint(1, 40)):
            key = b"K" + rng.randrange(200).to_bytes(2, "big")
            if rng.random() < 0.3:
                changes.append((key, None))
                state.pop(key, None)
            else:
                value = (rng.randrange(-(10**12), 10**12), bytes([rng.randrange(256)]) * 3)
                changes.append((key, value))
                state[key] = value
        tree.update(changes)
        assert tree.root() == full_root(state.items())
    assert tree.root() == reference_root(state)
    assert len(tree) == len(state)


def test_root_commits_to_each_value_and_key() -> None:
    base = {b"A" + bytes(32): (5,), b"B": (1, 2)}
    r = full_root(base.items())
    assert r != full_root({**base, b"A" + bytes(32): (6,)}.items())
    assert r != full_root({**base, b"C": (1, 2)}.items())
    assert r != full_root(list(base.items())[:1])


def test_known_answer_vector() -> None:
    """Pinned so that a change to the construction is a visible, deliberate protocol change."""
    records = {b"A" + bytes(32): (10**12,), b"G": (1, 100, 1, 1, 0)}
    assert leaf_hash(b"G", (1, 100, 1, 1, 0)) == hashlib.sha256(
        b"\x00" + bytes.fromhex("864147011864010100")).digest()
    assert bucket_of(b"G") == int.from_bytes(hashlib.sha256(b"G").digest()[:4], "big") % 65536
    assert full_root(records.items()) == reference_root(records)
    assert full_root(records.items()).hex() == (
        "46c7f4fb835a127c8202b7f00c6d8eec8be37d783f0866b44c83ff9516171d53"
    )


def test_exchange_root_equals_scratch_after_blocks(tmp_path: Path) -> None:
    h = Harness(tmp_path / "x.db")
    h.ok(h.place("alice", SELL, 100, 5), h.place("bob", BUY, 99, 5))
    h.ok(h.place("bob", BUY, 100, 3), h.oracle(101))
    assert h.ex.state_root == full_root(h.ex.records())
    assert h.ex.state_root == reference_root(dict(h.ex.records()))
    # A cancel changes the root; the root is stored with the block.
    before = h.ex.state_root
    h.ok(h.cancel_all("bob"))
    assert h.ex.state_root != before
    rows = h.ex.store.rows("SELECT height, state_root FROM blocks ORDER BY height")
    assert rows[-1] == (h.ex.height, h.ex.state_root)


def test_records_follow_the_documented_layout(tmp_path: Path) -> None:
    """Every record kind, built by hand from the table in docs/protocol/exchange.md §9."""
    h = Harness(tmp_path / "x.db")
    v0 = h.validators[0].public_key
    h.ok(h.oracle(101, validators=2), h.place("alice", SELL, 100, 5, cid=7),
         h.place("bob", BUY, 100, 2))
    records = dict(h.ex.records())
    alice, bob = h.key("alice"), h.key("bob")
    m0 = (0).to_bytes(4, "big")
    assert records[b"A" + alice] == (100_000 * USD - 40_000,)  # maker fee on 200 USD
    assert records[b"P" + alice + m0] == (-2, -200 * USD, 0, 0)
    assert records[b"P" + bob + m0] == (2, 200 * USD, 0, 0)
    # Order id 1, placed at height 1, 3 of 5 left; side 1 = sell; client id 7; not reduce-only.
    assert records[b"O" + (1).to_bytes(8, "big")] == (alice, 0, 1, 100, 5, 3, 7, False, 1)
    assert records[b"R" + m0 + v0] == (101, 100)
    ms = h.ex.market_state(0)
    assert records[b"M" + m0] == (101, 101, ms.premium_sum, 1, 1_000, 0, 0, 2, 2)
    assert records[b"G"] == (1, 100, 2, 2, 0)
    assert set(records) == (
        {b"A" + k for k in (alice, bob, h.key("fund"), h.key("fees"))}
        | {b"P" + alice + m0, b"P" + bob + m0, b"O" + (1).to_bytes(8, "big"), b"M" + m0, b"G"}
        | {b"R" + m0 + v.public_key for v in h.validators[:2]}
    )
    assert h.ex.state_root == reference_root(records)
