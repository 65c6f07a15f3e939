"""The mempool: admitted transactions waiting for a block, in arrival order.

Theory of operation: a transaction reaches the pool only after the admission rules
(``mempool_rules``: signature, static rules, and the stateful pre-check against the ledger) say
OK, so everything here is believed valid at the current height. The pool adds what those rules
cannot know: duplicates (same tx id, or the same (signer, nonce) replay key while the first is
still pending), bounds (total transactions and bytes, transactions per signer, so one account
cannot crowd out the others), and order (first come, first proposed — the sequencer takes
from the front). Committed transactions leave by id; expired ones are dropped as the height
passes their ``expiry_height``.

It is pure: no clock, no I/O; arrival order is insertion order. Not thread-safe: the daemon
touches it from the trio thread only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from lockstep.consensus.actions import SignedTx

MAX_POOL_TXS = 50_000
"""About three seconds of the measured verification rate of a 4-node testnet on two cores."""

MAX_POOL_BYTES = 16 * 1024 * 1024

MAX_PENDING_PER_SIGNER = 1_000
"""A market maker re-quoting 20 levels × 2 sides every block for ~25 blocks."""


class PoolReason(enum.IntEnum):
    """Refusals of the pool itself (codes above the admission rules' range)."""

    OK = 0
    ALREADY_KNOWN = 100
    """The same transaction is already pending."""
    NONCE_PENDING = 101
    """Another pending transaction of this signer uses the same nonce."""
    MEMPOOL_FULL = 102
    SIGNER_PENDING_LIMIT = 103
    """This signer already has MAX_PENDING_PER_SIGNER transactions waiting."""
    INCLUDED = 104
    """In a committed block that the ledger has not applied yet."""


@dataclass(frozen=True, slots=True)
class PendingTx:
    tx_id: bytes
    tx: SignedTx
    raw: bytes
    arrival_ms: int


class Mempool:
    def __init__(
        self,
        max_txs: int = MAX_POOL_TXS,
        max_bytes: int = MAX_POOL_BYTES,
        max_per_signer: int = MAX_PENDING_PER_SIGNER,
    ) -> None:
        self.max_txs, self.max_bytes, self.max_per_signer = max_txs, max_bytes, max_per_signer
        self._by_id: dict[bytes, PendingTx] = {}  # insertion-ordered: arrival order
        self._replay_keys: dict[tuple[bytes, int], bytes] = {}
        self._per_signer: dict[bytes, int] = {}
        self._included: set[bytes] = set()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._by_id

    def add(self, pending: PendingTx) -> PoolReason:
        """Queue an admitted transaction, or say why not. A refusal changes nothing."""
        if pending.tx_id in self._by_id:
            return PoolReason.ALREADY_KNOWN
        if pending.tx_id in self._included:
            return PoolReason.INCLUDED
        body = pending.tx.body
        key = (body.signer, body.nonce)
        if key in self._replay_keys:
            return PoolReason.NONCE_PENDING
        if len(self._by_id) >= self.max_txs or self.bytes + len(pending.raw) > self.max_bytes:
            return PoolReason.MEMPOOL_FULL
        count = self._per_signer.get(body.signer, 0)
        if count >= self.max_per_signer:
            return PoolReason.SIGNER_PENDING_LIMIT
        self._by_id[pending.tx_id] = pending
        self._replay_keys[key] = pending.tx_id
        self._per_signer[body.signer] = count + 1
        self.bytes += len(pending.raw)
        return PoolReason.OK

    def get(self, tx_id: bytes) -> PendingTx | None:
        return self._by_id.get(tx_id)

    def take(self, max_txs: int, max_bytes: int, height: int) -> list[PendingTx]:
        """The oldest pending transactions still valid at ``height``, within the limits.

        Does not remove them: they leave when committed (a proposal may fail and be retried).
        """
        out: list[PendingTx] = []
        size = 0
        for p in self._by_id.values():
            if len(out) >= max_txs:
                break
            if p.tx.body.expiry_height < height:
                continue
            if size + len(p.raw) > max_bytes:
                break
            out.append(p)
            size += len(p.raw)
        return out

    def remove(self, tx_ids: Iterable[bytes]) -> int:
        """Drop transactions (committed, or found invalid); returns how many were pending."""
        n = 0
        for tx_id in tx_ids:
            p = self._by_id.pop(tx_id, None)
            if p is None:
                continue
            n += 1
            body = p.tx.body
            del self._replay_keys[(body.signer, body.nonce)]
            left = self._per_signer[body.signer] - 1
            if left:
                self._per_signer[body.signer] = left
            else:
                del self._per_signer[body.signer]
            self.bytes -= len(p.raw)
        assert self.bytes >= 0 and len(self._replay_keys) == len(self._by_id)
        return n

    def commit(self, tx_ids: Iterable[bytes]) -> None:
        """A block with these transactions is committed: drop them, and refuse them until
        ``applied``."""
        ids = tuple(tx_ids)
        self.remove(ids)
        self._included.update(ids)

    def applied(self, tx_ids: Iterable[bytes]) -> None:
        """The ledger applied the block with these transactions (the node's results know
        them now)."""
        self._included.difference_update(tx_ids)

    def is_included(self, tx_id: bytes) -> bool:
        """Whether ``tx_id`` is in a committed block not applied yet."""
        return tx_id in self._included

    def drop_expired(self, height: int) -> list[bytes]:
        """Remove transactions whose expiry_height is below ``height``; returns their ids."""
        expired = [i for i, p in self._by_id.items() if p.tx.body.expiry_height < height]
        self.remove(expired)
        return expired
