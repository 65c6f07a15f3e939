"""Durable storage of uncommitted blocks the replica asked to keep (``PersistBlock``).

Why: a validator's lock names a block it voted for. If every validator crashed at once, that
block must still exist somewhere after the restart, or the locked replicas could never extend
it. The replica asks for such blocks to be durable before its vote leaves; this store appends
each one to a log and ``fdatasync``s it (one flush, no rename or directory sync), hands them
all back at start-up, and forgets them once they are committed (the block store has them then).

Forgetting: a running chain always has a voted block above the committed height (the 2-chain
rule commits a block when its child is certified, by which time this node has voted for the
grandchild), so the log is never entirely committed and emptying it only then would keep the
whole chain in it — a second copy of every block, all decoded again at each restart. So the
store keeps the uncommitted blocks' bytes in memory too (a few blocks), and once the log holds
``REWRITE_AFTER`` records and at least twice as many as are uncommitted, it writes those to a
new file, flushes it and renames it over the log. A crash at any point leaves either log, and
both hold every uncommitted block.

Record: ``length (4) || height (8) || block``; a torn tail from a crash is ignored.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

LOG_FILE = "pending_blocks.log"
_HEAD = struct.Struct(">IQ")
MAX_BLOCK_RECORD = 64 * 1024 * 1024
REWRITE_AFTER = 64
"""Records in the log before its uncommitted ones are rewritten into a fresh one."""


class PendingBlockStore:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / LOG_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._live: dict[bytes, tuple[int, bytes]] = {}
        """block hash (or, for records read back at start, a position key) → (height, block)
        for the logged blocks above the committed height."""
        self._records = 0
        """Records in the log file."""
        self.writes = 0
        self.rewrites = 0

    def close(self) -> None:
        os.close(self._fd)

    def save(self, height: int, block_hash: bytes, block: bytes) -> None:
        """Append ``block`` and make it durable (idempotent per block hash)."""
        if block_hash in self._live:
            return
        _write_all(self._fd, _HEAD.pack(len(block), height) + block)
        os.fdatasync(self._fd)
        self._live[block_hash] = (height, block)
        self._records += 1
        self.writes += 1

    def load(self, above: int = 0) -> list[bytes]:
        """Every complete block in the log above height ``above`` (the committed height; done
        once, at start-up)."""
        data = self.path.read_bytes()
        out, i, records = [], 0, 0
        while i + _HEAD.size <= len(data):
            n, height = _HEAD.unpack_from(data, i)
            if n > MAX_BLOCK_RECORD or i + _HEAD.size + n > len(data):
                break
            if height > above:
                block = data[i + _HEAD.size : i + _HEAD.size + n]
                out.append(block)
                self._live[b"@%d" % i] = (height, block)
            records += 1
            i += _HEAD.size + n
        self._records = records
        return out

    def prune(self, committed_height: int) -> None:
        """Forget the blocks at or below ``committed_height``; empty the log when nothing in it
        is above, or rewrite it with only what is once it has grown (see the module doc)."""
        live = self._live
        for key in [k for k, (height, _) in live.items() if height <= committed_height]:
            del live[key]
        if not live:
            if self._records:
                os.ftruncate(self._fd, 0)
                self._records = 0
        elif self._records >= REWRITE_AFTER and self._records >= 2 * len(live):
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(LOG_FILE + ".new")
        records = sorted(self._live.values(), key=lambda r: r[0])
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, b"".join(_HEAD.pack(len(b), h) + b for h, b in records))
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND, 0o600)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself, so the old log's records are not needed
        finally:
            os.close(dir_fd)
        self._records = len(records)
        self.rewrites += 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
