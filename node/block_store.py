"""The block store: every committed block with the certificate that committed it.

Theory of operation: a committed block is stored *before* the ledger applies it, so the
ledger can always be rebuilt by replaying the store (see the startup handshake). Rows are
appended in height order only; a gap or a second block at one height is a bug in the caller
and stops the node (assertion), because it would mean two different committed chains.

SQLite with ``synchronous=FULL`` in WAL mode: a commit returns once the WAL is fsync'd, so a
``kill -9`` (or power cut) right after :meth:`append` returns never loses the block. The
connection is used by one thread at a time (the daemon drives it through its single SQLite
worker, ``trio.to_thread.run_sync`` under a capacity limiter of one), hence
``check_same_thread=False``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height      INTEGER PRIMARY KEY,
    hash        BLOB NOT NULL UNIQUE,
    view        INTEGER NOT NULL,
    block       BLOB NOT NULL,   -- canonical CBOR of the Block
    certificate BLOB NOT NULL    -- canonical CBOR of what proves it committed
);
"""

MAX_RANGE_BLOCKS = 256
"""Most blocks returned by one range read (a sync response is built from one)."""


@dataclass(frozen=True, slots=True)
class StoredBlock:
    height: int
    block_hash: bytes
    view: int
    block: bytes
    certificate: bytes


class BlockStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._tip = self._db.execute("SELECT COALESCE(MAX(height), 0) FROM blocks").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    @property
    def tip_height(self) -> int:
        """Height of the highest stored block (0: only genesis)."""
        return int(self._tip)

    def append(self, stored: StoredBlock) -> None:
        """Durably store the next committed block. Heights must be consecutive."""
        self.append_many([stored])

    def append_many(self, blocks: list[StoredBlock]) -> None:
        """Durably store the next committed blocks, in one transaction (one flush: a node
        catching up, or committing a burst, does not pay a disk flush per block)."""
        tip = self._tip
        for b in blocks:
            assert b.height == tip + 1, f"block store: appending height {b.height} after tip {tip}"
            tip = b.height
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO blocks (height, hash, view, block, certificate) VALUES (?,?,?,?,?)",
                [(b.height, b.block_hash, b.view, b.block, b.certificate) for b in blocks],
            )
        self._tip = tip

    def get(self, height: int) -> StoredBlock | None:
        row = self._db.execute(
            "SELECT height, hash, view, block, certificate FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        return StoredBlock(*row) if row else None

    def get_by_hash(self, block_hash: bytes) -> StoredBlock | None:
        row = self._db.execute(
            "SELECT height, hash, view, block, certificate FROM blocks WHERE hash = ?",
            (block_hash,),
        ).fetchone()
        return StoredBlock(*row) if row else None

    def chain_to(self, block_hash: bytes, count: int) -> list[StoredBlock]:
        """The block with this hash and up to ``count - 1`` blocks below it, newest first (the
        stored chain is linear: each block's parent is the one below it); empty if unknown."""
        top = self.get_by_hash(block_hash)
        if top is None:
            return []
        return self.range(max(1, top.height - count + 1), top.height)[::-1]

    def range(self, first: int, last: int) -> list[StoredBlock]:
        """Blocks ``first..last`` inclusive, at most MAX_RANGE_BLOCKS of them."""
        last = min(last, first + MAX_RANGE_BLOCKS - 1)
        rows = self._db.execute(
            "SELECT height, hash, view, block, certificate FROM blocks"
            " WHERE height BETWEEN ? AND ? ORDER BY height",
            (first, last),
        ).fetchall()
        return [StoredBlock(*r) for r in rows]
