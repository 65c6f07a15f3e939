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

Lost is not absent. No slot file (or only empty ones: created, never written) is a node that
never voted. A slot with bytes that do not verify, and no valid slot beside it, is a state
that existed and is gone — random bytes, a truncation, a restored half — and loading it as
"never voted" would let the validator vote again in views it already voted in. So
:meth:`SafetyStore.load` raises :class:`SafetyStateLost` then; the operator's way out is
``lockstep node run --reset-safety-state``, which learns from peers how far the views went and
lets the replica sign only above that (``consensus/safety_rules.py``, :class:`SafetyReset`).

The store is opaque: it holds bytes the core produced and returns them unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from pathlib import Path

from .context import StartupError

SLOT_FILES = ("safety_state.a", "safety_state.b")
_HEADER = struct.Struct(">QI32s")


class SafetyStateLost(StartupError):
    """Slot files hold bytes but none of them verifies: the last vote is unknown, not absent."""

    def __init__(self, faults: list[tuple[Path, str]]) -> None:
        self.faults = faults
        what = "; ".join(f"{path}: {why}" for path, why in faults)
        super().__init__(
            f"the consensus safety state is lost ({what}). This validator may have voted in "
            f"views it no longer remembers, so it will not start as one that never voted. "
            f"Start it once with `lockstep node run --reset-safety-state`: it learns from its "
            f"peers how far the views went and signs nothing below that "
            f"(docs/operators.md, \"A lost safety state\")"
        )


class SafetyStateIntact(StartupError):
    """``--reset-safety-state`` was asked for, but the safety state verifies: nothing to reset
    (a reset drops the lock, so it is refused unless the state is really gone)."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            f"--reset-safety-state: the safety state in {data_dir} is intact, so there is "
            f"nothing to reset; start the node without the flag"
        )


class SafetyStore:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        self.paths = tuple(data_dir / name for name in SLOT_FILES)
        self.writes = 0
        self._seq = 0
        self._next_slot = 0
        self._fds: list[int] | None = None

    def _slot(self, path: Path) -> tuple[int, bytes] | str | None:
        """A slot's (sequence, state); None if it holds nothing; why not, if it is damaged."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw:
            return None  # created, never written
        if len(raw) < _HEADER.size:
            return f"{len(raw)} bytes, shorter than its {_HEADER.size}-byte header"
        seq, length, digest = _HEADER.unpack_from(raw)
        body = raw[_HEADER.size : _HEADER.size + length]
        if len(body) != length:
            return f"{len(raw)} bytes, its header promises {_HEADER.size + length}"
        if hashlib.sha256(raw[:12] + body).digest() != digest:
            return f"checksum mismatch over {len(raw)} bytes"
        return seq, body

    def load(self) -> bytes | None:
        """The last saved state, or None on a node that has never voted.

        Raises :class:`SafetyStateLost` if a slot holds bytes and none verifies. One damaged
        slot beside a valid one is a torn write (the save never returned): the valid one wins.
        """
        slots = [self._slot(p) for p in self.paths]
        valid = [(s[0], i, s[1]) for i, s in enumerate(slots) if isinstance(s, tuple)]
        if not valid:
            faults = [(p, s) for p, s in zip(self.paths, slots, strict=True) if isinstance(s, str)]
            if faults:
                raise SafetyStateLost(faults)
            return None
        seq, i, body = max(valid)
        self._seq, self._next_slot = seq, 1 - i
        return body

    def load_for_reset(self) -> bool:
        """Prepare a reset: True if slot files held a state that is lost, False if there were
        none (a fresh data directory under a key that may have voted before).

        Raises :class:`SafetyStateIntact` if the state verifies. The damaged slots stay as
        they are until the first save: a crash before it must not leave "never voted".
        """
        try:
            if self.load() is not None:
                raise SafetyStateIntact(self.dir)
        except SafetyStateLost:
            self._seq, self._next_slot = 0, 0
            return True
        return False

    def _open(self) -> list[int]:
        if self._fds is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            if self._seq == 0:
                # On a reset the damaged slots stay until this first save replaces them.
                with contextlib.suppress(SafetyStateLost):
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
