"""Durable storage of uncommitted blocks the replica asked to keep (``PersistBlock``).

Why: a validator's lock names a block it voted for. If every validator crashed at once, that
block must still exist somewhere after the restart, or the locked replicas could never extend
it. The replica asks for such blocks to be durable before its vote leaves; this store appends
each one to a log and ``fdatasync``s it (one flush, no rename or directory sync), hands them
all back at start-up, and forgets them once they are committed (the block store has them
then): when every logged block is at or below the committed height, the log is emptied.

Record: ``length (4) || height (8) || block``; a torn tail from a crash is ignored.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

LOG_FILE = "pending_blocks.log"
_HEAD = struct.Struct(">IQ")
MAX_BLOCK_RECORD = 64 * 1024 * 1024


class PendingBlockStore:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / LOG_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._max_height = 0
        self._saved: set[bytes] = set()
        self.writes = 0

    def close(self) -> None:
        os.close(self._fd)

    def save(self, height: int, block_hash: bytes, block: bytes) -> None:
        """Append ``block`` and make it durable (idempotent per block hash)."""
        if block_hash in self._saved:
            return
        os.write(self._fd, _HEAD.pack(len(block), height) + block)
        os.fdatasync(self._fd)
        self._saved.add(block_hash)
        self._max_height = max(self._max_height, height)
        self.writes += 1

    def load(self) -> list[bytes]:
        """Every complete block in the log (done once, at start-up)."""
        data = self.path.read_bytes()
        out, i = [], 0
        while i + _HEAD.size <= len(data):
            n, height = _HEAD.unpack_from(data, i)
            if n > MAX_BLOCK_RECORD or i + _HEAD.size + n > len(data):
                break
            out.append(data[i + _HEAD.size : i + _HEAD.size + n])
            self._max_height = max(self._max_height, height)
            i += _HEAD.size + n
        return out

    def prune(self, committed_height: int) -> None:
        """Empty the log once everything in it is committed (a leftover is harmless)."""
        if self._max_height and self._max_height <= committed_height:
            os.ftruncate(self._fd, 0)
            self._saved.clear()
            self._max_height = 0
