"""Durable storage of uncommitted blocks the replica asked to keep (``PersistBlock``).

Why: a validator's lock names a block it voted for. If every validator crashed at once, that
block must still exist somewhere after the restart, or the locked replicas could never extend
it. The replica asks for such blocks to be durable before its vote leaves; this store writes
each one to its own file (temporary file, fsync, rename, fsync of the directory), hands them all
back at start-up, and drops those at or below the committed height (they are in the block store
by then).

File names are ``<height, 12 digits>-<block hash hex>.cbor``, so pruning needs no decoding.
"""

from __future__ import annotations

import os
from pathlib import Path

PENDING_DIR = "pending_blocks"


class PendingBlockStore:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / PENDING_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.writes = 0

    def save(self, height: int, block_hash: bytes, block: bytes) -> None:
        path = self.dir / f"{height:012d}-{block_hash.hex()}.cbor"
        if path.exists():
            return
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.writes += 1

    def load(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.dir.glob("*.cbor"))]

    def prune(self, committed_height: int) -> None:
        """Forget blocks at or below the committed height (not durable: a leftover is harmless)."""
        for p in self.dir.glob("*.cbor"):
            if int(p.name[:12]) <= committed_height:
                p.unlink(missing_ok=True)
