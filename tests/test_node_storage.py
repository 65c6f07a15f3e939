"""Block store and safety store: durable, ordered, and exactly what was written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lockstep.node.block_store import BlockStore, StoredBlock
from lockstep.node.safety_store import SafetyStore


def _block(h: int) -> StoredBlock:
    return StoredBlock(h, bytes([h % 256]) * 32, h + 1, b"block%d" % h, b"qc%d" % h)


def test_append_get_range(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "blocks.sqlite")
    assert store.tip_height == 0 and store.get(1) is None
    for h in range(1, 11):
        store.append(_block(h))
    assert store.tip_height == 10
    assert store.get(3) == _block(3)
    assert store.get_by_hash(_block(7).block_hash) == _block(7)
    assert [b.height for b in store.range(4, 6)] == [4, 5, 6]
    assert store.range(11, 20) == []
    assert [b.height for b in store.chain_to(_block(7).block_hash, 3)] == [7, 6, 5]
    assert [b.height for b in store.chain_to(_block(2).block_hash, 32)] == [2, 1]
    assert store.chain_to(b"\xee" * 32, 3) == []
    store.close()
    reopened = BlockStore(tmp_path / "blocks.sqlite")
    assert reopened.tip_height == 10 and reopened.get(10) == _block(10)


def test_gap_or_repeat_is_a_bug(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "blocks.sqlite")
    store.append(_block(1))
    with pytest.raises(AssertionError, match="appending height 3 after tip 1"):
        store.append(_block(3))
    with pytest.raises(AssertionError):
        store.append(_block(1))
    assert store.tip_height == 1


def test_block_survives_kill_9(tmp_path: Path) -> None:
    """A block whose append returned is there after the writer is SIGKILLed."""
    script = f"""
import os, signal
from pathlib import Path
from lockstep.node.block_store import BlockStore, StoredBlock
s = BlockStore(Path({str(tmp_path / "b.sqlite")!r}))
for h in range(1, 51):
    s.append(StoredBlock(h, h.to_bytes(32, 'big'), h, b'x' * 1000, b'q'))
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    assert BlockStore(tmp_path / "b.sqlite").tip_height == 50


def test_safety_store_round_trip(tmp_path: Path) -> None:
    store = SafetyStore(tmp_path / "data")
    assert store.load() is None
    store.save(b"\x01\x02")
    store.save(b"state-2")
    assert SafetyStore(tmp_path / "data").load() == b"state-2"
    store.save(b"state-3")
    assert SafetyStore(tmp_path / "data").load() == b"state-3"
    assert store.writes == 3
    for p in store.paths:
        assert os.stat(p).st_mode & 0o077 == 0


def test_safety_store_survives_a_torn_slot(tmp_path: Path) -> None:
    store = SafetyStore(tmp_path)
    store.save(b"older")
    store.save(b"newest")
    newest = store.paths[1]  # saves alternate: slot a, then slot b
    with open(newest, "r+b") as f:  # a crash tore the last write
        f.seek(46)
        f.write(b"\xff\xff")
    assert SafetyStore(tmp_path).load() == b"older"
    again = SafetyStore(tmp_path)
    assert again.load() == b"older"
    again.save(b"after restart")  # overwrites the torn slot, not the good one
    assert SafetyStore(tmp_path).load() == b"after restart"


def test_pending_blocks_logged_until_committed(tmp_path: Path) -> None:
    from lockstep.node.pending_store import PendingBlockStore

    store = PendingBlockStore(tmp_path)
    store.save(5, b"\x05" * 32, b"block five")
    store.save(5, b"\x05" * 32, b"block five")  # the same block twice is written once
    store.save(6, b"\x06" * 32, b"block six")
    assert store.writes == 2
    store.prune(5)  # block six is not committed yet: keep everything
    store.close()
    again = PendingBlockStore(tmp_path)
    assert again.load() == [b"block five", b"block six"]
    again.prune(6)
    assert again.load() == []
    with open(tmp_path / "pending_blocks.log", "ab") as f:
        f.write(b"\x00\x00\x00\x09\x00")  # a torn record
    assert PendingBlockStore(tmp_path).load() == []


def test_the_pending_log_keeps_only_uncommitted_blocks_on_a_running_chain(tmp_path: Path) -> None:
    """A running chain always has a voted block above the committed height, so the log is
    never wholly committed; it must still not grow with the chain (a second copy of every
    block, all decoded again at each restart)."""
    from lockstep.node.pending_store import REWRITE_AFTER, PendingBlockStore

    store = PendingBlockStore(tmp_path)
    log = tmp_path / "pending_blocks.log"
    for h in range(1, 20 * REWRITE_AFTER):
        store.save(h, h.to_bytes(32, "big"), b"block %d" % h)
        store.prune(h - 2)  # the 2-chain rule: h - 2 commits as h is voted
        assert log.stat().st_size <= 2 * REWRITE_AFTER * 32
    assert store.rewrites >= 19
    store.close()  # a crash here: the uncommitted blocks are all in the log
    again = PendingBlockStore(tmp_path)
    top = 20 * REWRITE_AFTER - 1
    assert again.load(above=top - 2) == [b"block %d" % (top - 1), b"block %d" % top]
    again.prune(top - 1)
    again.close()
    assert PendingBlockStore(tmp_path).load(above=top - 1) == [b"block %d" % top]


def test_a_burst_of_blocks_is_stored_in_one_transaction(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "blocks.sqlite")
    store.append_many([StoredBlock(h, bytes([h]) * 32, h, b"b%d" % h, b"q") for h in (1, 2, 3)])
    assert store.tip_height == 3 and [b.height for b in store.range(1, 10)] == [1, 2, 3]
    with pytest.raises(AssertionError):
        store.append_many([StoredBlock(5, bytes(32), 5, b"", b"")])  # a gap
    assert store.tip_height == 3
    store.close()
    assert BlockStore(tmp_path / "blocks.sqlite").tip_height == 3
