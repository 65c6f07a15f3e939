"""Storage faults: typed errors that say which file failed, how, and what the operator does.

Two kinds. At start, a store that is damaged (a SQLite file that fails its check, a ledger
whose state root the certified chain contradicts, a block store that cannot be read) raises a
:class:`StartupError` subclass, so the node refuses before it serves or votes. While running,
an I/O error writing a store (disk full, EIO) raises :class:`StorageFailure`: the node stops
at once — before the vote or acknowledgement that depended on the write leaves — with one line
naming the file, and starts cleanly once the cause is fixed (every store is written so that an
interrupted write is recovered on the next start).
"""

from __future__ import annotations

import errno
from pathlib import Path

from .context import StartupError


class StorageFailure(Exception):
    """Writing or syncing a store failed while the node runs; the node must stop."""

    def __init__(self, what: str, path: Path, error: OSError | Exception) -> None:
        self.what, self.path, self.error = what, path, error
        code = getattr(error, "errno", None)
        if code == errno.ENOSPC:
            advice = "free space on that file system"
        elif code == errno.EIO:
            advice = "check the disk (dmesg, SMART) before restarting"
        else:
            advice = "fix the cause"
        detail = getattr(error, "strerror", None) or str(error)
        super().__init__(
            f"cannot write the {what} {path}: {detail}. The node stopped before anything "
            f"depending on the write left it; {advice}, then start it again"
        )


class BlockStoreDamaged(StartupError):
    """The block store cannot be read or fails its check: it is the ledger's source, so the
    node cannot rebuild anything from it."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path, self.detail = path, detail
        super().__init__(
            f"the block store {path} is damaged ({detail}). It holds the certified chain the "
            f"ledger is rebuilt from: move {path.name} and {path.parent / 'ledger.sqlite'} "
            f"aside (keep the safety_state files) and start again to sync from peers"
        )


class LedgerDamaged(StartupError):
    """The ledger file fails its check or contradicts the certified chain (carried by the
    handshake to a rebuild; the message is what an operator sees if the rebuild fails too)."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path, self.detail = path, detail
        super().__init__(
            f"the ledger {path} is damaged ({detail}); remove it and start again to rebuild "
            f"it from the block store"
        )


def is_io_error(e: BaseException) -> bool:
    """An error from the disk rather than from our code: the node stops, it is not a bug."""
    return isinstance(e, OSError) and getattr(e, "errno", None) in (
        errno.ENOSPC,
        errno.EIO,
        errno.EDQUOT,
        errno.EROFS,
    )
