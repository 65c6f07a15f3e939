"""Replay protection: the (signer, nonce) pairs used by transactions that have not yet expired.

Theory of operation: every signed body carries ``nonce`` and ``expiry_height``; admission refuses
a body whose ``expiry_height`` is below the current height or more than
``MAX_EXPIRY_WINDOW_BLOCKS`` ahead. So a body can only ever be included while its expiry has not
passed, and remembering each used (signer, nonce) *until its expiry height* is enough to refuse
every replay, with memory bounded by the traffic of one expiry window. Pairs are forgotten by
:meth:`ReplayGuard.prune` once ``height > expiry``; they are indexed by expiry height so pruning
costs only what it forgets.

A pair is remembered when its transaction is *applied or skipped for a stateful reason* in a
block (the tx was included and consumed its nonce), never at the edge: the mempool checks
:meth:`seen` but only finalized blocks change this memory, so every node holds the same set.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class ReplayGuard:
    __slots__ = ("_by_expiry", "_expiry", "added")

    def __init__(self) -> None:
        self._expiry: dict[tuple[bytes, int], int] = {}
        self._by_expiry: dict[int, list[tuple[bytes, int]]] = {}
        self.added: list[tuple[bytes, int, int]] = []
        """(signer, nonce, expiry) remembered since the last :meth:`take_added` (for SQLite)."""

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, signer: bytes, nonce: int) -> bool:
        return (signer, nonce) in self._expiry

    def remember(self, signer: bytes, nonce: int, expiry_height: int) -> None:
        key = (signer, nonce)
        assert key not in self._expiry, "replayed nonce must be refused before it is remembered"
        self._expiry[key] = expiry_height
        self._by_expiry.setdefault(expiry_height, []).append(key)
        self.added.append((signer, nonce, expiry_height))

    def prune(self, height: int) -> int:
        """Forget every pair whose expiry is below ``height``. Returns the number forgotten.

        Call with the height of the block about to execute: a pair with expiry < height can no
        longer be included (its body would be EXPIRED), so it need not be remembered.
        """
        gone = [h for h in self._by_expiry if h < height]
        n = 0
        for h in sorted(gone):
            for key in self._by_expiry.pop(h):
                del self._expiry[key]
                n += 1
        return n

    def take_added(self) -> list[tuple[bytes, int, int]]:
        out, self.added = self.added, []
        return out

    def items(self) -> Iterator[tuple[bytes, int, int]]:
        for (signer, nonce), expiry in sorted(self._expiry.items()):
            yield signer, nonce, expiry

    def load(self, rows: Iterable[tuple[bytes, int, int]]) -> None:
        for signer, nonce, expiry in rows:
            self.remember(signer, nonce, expiry)
        self.added.clear()
