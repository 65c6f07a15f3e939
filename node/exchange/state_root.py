"""The state root: one SHA-256 hash committing to every ledger record, updated incrementally.

Theory of operation. Each record of the ledger (account, position, resting order, market state,
oracle observation, and one ``global`` record) has a byte *key* and an integer/bytes *value*
tuple; see :func:`leaf` and ``docs/protocol/exchange.md`` for the exact layout of each kind.

* ``leaf hash = SHA-256(0x00 || canonical CBOR [key, value...])``
* a record's *bucket* is ``uint32_be(SHA-256(key)[0:4]) mod N_BUCKETS``;
* ``bucket hash = SHA-256(0x01 || leaf hashes of the bucket's records, sorted by key)``
  (an empty bucket hashes ``SHA-256(0x01)``);
* the bucket hashes are the leaves of a complete 16-ary Merkle tree of depth 4:
  ``node = SHA-256(0x02 || child_0 || … || child_15)``;
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
FANOUT = 16
"""Children per tree node: depth 4 over 2^16 buckets, so a block touching k buckets rehashes
about k + k/16 + ... nodes rather than ~k × (16 − log2 k) for a binary tree."""
_DEPTH = 4
assert FANOUT**_DEPTH == N_BUCKETS == 1 << 16

_sha = hashlib.sha256
_dumps = cbor2.dumps

EMPTY_BUCKET = _sha(b"\x01").digest()


def leaf_hash(key: bytes, value: tuple) -> bytes:
    return _sha(b"\x00" + _dumps([key, *value], canonical=True)).digest()


def bucket_of(key: bytes) -> int:
    return int.from_bytes(_sha(key).digest()[:4], "big") % N_BUCKETS


class StateTree:
    __slots__ = ("_buckets", "_levels")

    def __init__(self) -> None:
        self._buckets: dict[int, dict[bytes, bytes]] = {}
        # _levels[0] holds the bucket hashes; _levels[d][i] hashes _levels[d-1][16i : 16i+16];
        # _levels[_DEPTH] is the single root node.
        level = [EMPTY_BUCKET] * N_BUCKETS
        levels = [level]
        while len(level) > 1:
            h = _sha(b"\x02" + b"".join(level[:FANOUT])).digest()
            level = [h] * (len(level) // FANOUT)
            levels.append(level)
        self._levels = levels

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def update(self, changes: Iterable[tuple[bytes, tuple | None]]) -> None:
        """Apply (key, new value or None) changes and rehash the touched paths."""
        buckets = self._buckets
        touched: set[int] = set()
        for key, value in changes:
            # uint32_be(SHA-256(key)[0:4]) mod 2^16 is the big-endian value of bytes 2..3.
            b = int.from_bytes(_sha(key).digest()[2:4], "big")
            touched.add(b)
            bucket = buckets.get(b)
            if value is None:
                if bucket is not None:
                    bucket.pop(key, None)
            else:
                if bucket is None:
                    bucket = buckets[b] = {}
                bucket[key] = _sha(b"\x00" + _dumps([key, *value], canonical=True)).digest()
        level = self._levels[0]
        for b in touched:
            bucket = buckets.get(b)
            if bucket:
                if len(bucket) == 1:
                    level[b] = _sha(b"\x01" + next(iter(bucket.values()))).digest()
                else:
                    leaves = b"".join([bucket[k] for k in sorted(bucket)])
                    level[b] = _sha(b"\x01" + leaves).digest()
            else:
                level[b] = EMPTY_BUCKET
                buckets.pop(b, None)
        for d in range(1, _DEPTH + 1):
            below, level = level, self._levels[d]
            touched = {i // FANOUT for i in touched}
            for i in touched:
                j = i * FANOUT
                level[i] = _sha(b"\x02" + b"".join(below[j : j + FANOUT])).digest()

    def root(self) -> bytes:
        return _sha(DOMAIN_STATE + self._levels[_DEPTH][0]).digest()


def full_root(records: Iterable[tuple[bytes, tuple]]) -> bytes:
    """The root computed from scratch (for tests and for a second implementation to match)."""
    t = StateTree()
    t.update(records)
    return t.root()
