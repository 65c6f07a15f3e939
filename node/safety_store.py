"""Durable storage of the consensus safety state (last voted view, lock, …).

The consensus core's safety rules hand the node an encoded safety state and require it to be
durable *before* the vote or timeout that depends on it leaves the node: a replica that
crashes after voting must remember, on restart, that it voted, or it could vote twice in one
view. So :meth:`SafetyStore.save` returns only after the bytes are on disk.

Layout (as TigerBeetle keeps redundant superblock copies): two slot files, written
alternately in place, each ``sequence (8) || length (4) || SHA-256 of the rest (32) ||
state``. A save overwrites the *older* slot and ``fdatasync``s it — one flush per vote, no
rename and no directory sync (the files already exist). A crash can tear only the slot being
written; its checksum then fails and loading falls back to the other slot. That is safe: a
save that was torn never returned, so nothing that depended on it was sent. Loading takes the
valid slot with the higher sequence.

The store is opaque: it holds bytes the core produced and returns them unchanged.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

SLOT_FILES = ("safety_state.a", "safety_state.b")
_HEADER = struct.Struct(">QI32s")


class SafetyStore:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.paths = tuple(data_dir / name for name in SLOT_FILES)
        self.writes = 0
        self._seq = 0
        self._next_slot = 0
        self._fds: list[int] | None = None

    def _slot(self, path: Path) -> tuple[int, bytes] | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(raw) < _HEADER.size:
            return None
        seq, length, digest = _HEADER.unpack_from(raw)
        body = raw[_HEADER.size : _HEADER.size + length]
        if len(body) != length or hashlib.sha256(raw[:12] + body).digest() != digest:
            return None  # torn by a crash mid-write: the other slot holds the previous state
        return seq, body

    def load(self) -> bytes | None:
        """The last saved state, or None on a node that has never voted."""
        slots = [self._slot(p) for p in self.paths]
        valid = [(s[0], i, s[1]) for i, s in enumerate(slots) if s is not None]
        if not valid:
            return None
        seq, i, body = max(valid)
        self._seq, self._next_slot = seq, 1 - i
        return body

    def _open(self) -> list[int]:
        if self._fds is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            if self._seq == 0:
                self.load()
            created = [not p.exists() for p in self.paths]
            self._fds = [os.open(p, os.O_RDWR | os.O_CREAT, 0o600) for p in self.paths]
            if any(created):  # make the new directory entries durable once
                dir_fd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        return self._fds

    def save(self, state: bytes) -> None:
        """Make ``state`` durable; returns only once it would survive a power cut."""
        fds = self._open()
        self._seq += 1
        head = struct.pack(">QI", self._seq, len(state))
        record = head + hashlib.sha256(head + state).digest() + state
        fd = fds[self._next_slot]
        os.pwrite(fd, record, 0)
        os.ftruncate(fd, len(record))
        os.fdatasync(fd)
        self._next_slot = 1 - self._next_slot
        self.writes += 1

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None
