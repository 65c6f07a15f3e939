"""The node's one SQLite worker: every touch of the ledger, the exchange state kept with it,
and the block store goes through here.

Why: aiosqlite is asyncio-only, and SQLite connections must not be used by two threads at
once. Trio's way is ``trio.to_thread.run_sync`` under a ``CapacityLimiter`` of one: calls run
one at a time, in submission order, off the event loop, so consensus and networking keep
running while a block is applied. The exchange's in-memory state (books, accounts) is mutated
only by ``apply_block`` on this worker, so reads for the RPC come here too — never a read
racing a write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")


class SqliteWorker:
    def __init__(self) -> None:
        self._limiter = trio.CapacityLimiter(1)
        self.calls = 0

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the worker; waits for calls queued before it."""
        self.calls += 1
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
