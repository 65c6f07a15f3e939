"""The mempool journal: what was synced survives a crash; a torn tail is ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio
from lockstep.node.mempool_journal import JOURNAL_FILE, MempoolJournal


async def test_group_commit_and_read_back(tmp_path: Path) -> None:
    j = MempoolJournal(tmp_path)
    async with trio.open_nursery() as nursery:
        for i in range(20):

            async def submit(i: int = i) -> None:
                j.append(b"tx%d" % i)
                await j.sync()

            nursery.start_soon(submit)
    assert j.syncs < 20  # concurrent submissions shared flushes
    j.close()
    assert sorted(MempoolJournal(tmp_path).read()) == sorted(b"tx%d" % i for i in range(20))


async def test_torn_tail_ignored(tmp_path: Path) -> None:
    j = MempoolJournal(tmp_path)
    j.append(b"complete")
    await j.sync()
    j.close()
    with open(tmp_path / JOURNAL_FILE, "ab") as f:
        f.write(b"\x00\x00\x00\x10part")  # a record cut short by a crash
    assert MempoolJournal(tmp_path).read() == [b"complete"]


async def test_compact_keeps_only_pending(tmp_path: Path) -> None:
    j = MempoolJournal(tmp_path)
    for i in range(5):
        j.append(b"%d" % i)
    await j.sync()
    j.compact([b"3", b"4"])
    j.append(b"5")
    await j.sync()
    j.close()
    assert MempoolJournal(tmp_path).read() == [b"3", b"4", b"5"]


def test_synced_record_survives_kill_9(tmp_path: Path) -> None:
    script = f"""
import os, signal, trio
from pathlib import Path
from lockstep.node.mempool_journal import MempoolJournal
async def main():
    j = MempoolJournal(Path({str(tmp_path)!r}))
    j.append(b"acknowledged")
    await j.sync()
    os.kill(os.getpid(), signal.SIGKILL)
trio.run(main)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr
    assert MempoolJournal(tmp_path).read() == [b"acknowledged"]
    assert os.stat(tmp_path / JOURNAL_FILE).st_mode & 0o077 == 0
