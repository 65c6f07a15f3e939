"""Durable storage of the consensus safety state (last voted view, lock, …).

The consensus core's safety rules hand the node an encoded safety state and require it to be
durable *before* the vote or timeout that depends on it leaves the node: a replica that
crashes after voting must remember, on restart, that it voted, or it could vote twice in one
view. So :meth:`SafetyStore.save` returns only after the bytes are on disk: write a temporary
file, fsync it, rename it over the old one, fsync the directory (the rename itself must be
durable too). A crash at any instant leaves either the old or the new state, never a torn one.

The store is opaque: it holds bytes the core produced and returns them unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

SAFETY_FILE = "safety_state.cbor"


class SafetyStore:
    """One file under the node's data directory, replaced atomically and durably."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.path = data_dir / SAFETY_FILE
        self._tmp = data_dir / (SAFETY_FILE + ".tmp")
        self.writes = 0

    def load(self) -> bytes | None:
        """The last saved state, or None on a node that has never voted."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def save(self, state: bytes) -> None:
        """Make ``state`` durable; returns only once it would survive a power cut."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(state)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._tmp, self.path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.writes += 1
