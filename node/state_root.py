"""The state root: one SHA-256 hash committing to every ledger record, updated incrementally.

Theory of operation. Each record of the ledger (account, position, resting order, market state,
oracle observation, and one ``global`` record) has a byte *key* and an integer/bytes *value*
tuple; see :func:`leaf` and ``docs/protocol/exchange.md`` for the exact layout of each kind.

* ``leaf hash = SHA-256(0x00 || canonical CBOR [key, value...])``
* a record's *bucket* is ``uint32_be(SHA-256(key)[0:4]) mod N_BUCKETS``;
* ``bucket hash = SHA-256(0x01 || leaf hashes of the bucket's records, sorted by key)``
  (an empty bucket hashes ``SHA-256(0x01)``);
* the bucket hashes are the leaves of a complete binary Merkle tree of depth
  ``log2(N_BUCKETS)``: ``node = SHA-256(0x02 || left || right)``;
* ``state root = SHA-256(DOMAIN_STATE || tree root)``.

A block passes the keys it changed (with the new value, or ``None`` for a deleted record) to
:meth:`StateTree.update`; only their buckets are rehashed, then only the tree nodes above them.
The cost is ``O(changed records × (bucket size + depth))``, independent of the ledger's size as
long as buckets stay small (with 2^16 buckets, a million records make ~15 per bucket).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import cbor2
from lockstep.consensus.crypto import DOMAIN_STATE

N_BUCKETS = 1 << 16
"""Fixed by the protocol; 2^16 keeps buckets small up to millions of records (see above)."""
_DEPTH = 16
assert 1 << _DEPTH == N_BUCKETS

_sha = hashlib.sha256
_dumps = cbor2.dumps

EMPTY_BUCKET = _sha(b"\x01").digest()


def leaf_hash(key: bytes, value: tuple) -> bytes:
    return _sha(b"\x00" + _dumps([key, *value], canonical=True)).digest()


def bucket_of(key: bytes) -> int:
    return int.from_bytes(_sha(key).digest()[:4], "big") % N_BUCKETS


class StateTree:
    __slots__ = ("_buckets", "_nodes")

    def __init__(self) -> None:
        self._buckets: dict[int, dict[bytes, bytes]] = {}
        # Heap layout: node i has children 2i and 2i+1; leaves (bucket hashes) at N..2N-1.
        nodes = [b""] * (2 * N_BUCKETS)
        for i in range(N_BUCKETS, 2 * N_BUCKETS):
            nodes[i] = EMPTY_BUCKET
        for i in range(N_BUCKETS - 1, 0, -1):
            nodes[i] = _sha(b"\x02" + nodes[2 * i] + nodes[2 * i + 1]).digest()
        self._nodes = nodes

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def update(self, changes: Iterable[tuple[bytes, tuple | None]]) -> None:
        """Apply (key, new value or None) changes and rehash the touched paths."""
        buckets = self._buckets
        touched: set[int] = set()
        for key, value in changes:
            b = bucket_of(key)
            touched.add(b)
            bucket = buckets.get(b)
            if value is None:
                if bucket is not None:
                    bucket.pop(key, None)
            else:
                if bucket is None:
                    bucket = buckets[b] = {}
                bucket[key] = leaf_hash(key, value)
        nodes = self._nodes
        parents: set[int] = set()
        for b in touched:
            bucket = buckets.get(b)
            if bucket:
                h = _sha(b"\x01" + b"".join(bucket[k] for k in sorted(bucket))).digest()
            else:
                h = EMPTY_BUCKET
                buckets.pop(b, None)
            nodes[N_BUCKETS + b] = h
            parents.add((N_BUCKETS + b) >> 1)
        while parents:
            nxt: set[int] = set()
            for i in parents:
                nodes[i] = _sha(b"\x02" + nodes[2 * i] + nodes[2 * i + 1]).digest()
                if i > 1:
                    nxt.add(i >> 1)
            parents = nxt

    def root(self) -> bytes:
        return _sha(DOMAIN_STATE + self._nodes[1]).digest()


def full_root(records: Iterable[tuple[bytes, tuple]]) -> bytes:
    """The root computed from scratch (for tests and for a second implementation to match)."""
    t = StateTree()
    t.update(records)
    return t.root()
