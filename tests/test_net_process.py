"""Hosts in separate processes: a peer killed with SIGKILL is reconnected once it restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import trio
from lockstep.net.framing import Kind
from structlog.testing import capture_logs

from .net_harness import events, net_genesis, start_host, wait_for

pytestmark = pytest.mark.timeout(20)

SCRIPT = os.path.join(os.path.dirname(__file__), "net_node_proc.py")


async def _spawn(args: list[str]) -> trio.Process:
    proc = await trio.lowlevel.open_process(
        [sys.executable, SCRIPT, *args], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    return proc


async def _lines(proc: trio.Process, into: list[str]) -> None:
    buf = b""
    assert proc.stdout is not None
    async for chunk in proc.stdout:
        buf += chunk
        *done, buf = buf.split(b"\n")
        into.extend(line.decode() for line in done)


async def test_sigkilled_peer_is_reconnected_after_restart() -> None:
    g, s = net_genesis(2)
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            a = await start_host(nursery, g, s[0])
            out: list[str] = []
            proc = await _spawn(["1", "2", "0", f"0={a.listen_port}"])
            nursery.start_soon(_lines, proc, out)
            await wait_for(lambda: any(x.startswith("READY") for x in out), 10)
            port = int(next(x for x in out if x.startswith("READY")).split()[1])
            a.add_peer(s[1].public_key, f"127.0.0.1:{port}")
            with trio.fail_after(5):
                await a.wait_connected([s[1].public_key])
            a.broadcast(Kind.TX, b"before")
            await wait_for(lambda: "GOT before" in out)

            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            await wait_for(lambda: not a.is_connected(s[1].public_key))
            # Both ends dial at start; if both sessions opened, one was retired as a duplicate
            # (and may have seen the kill before its linger ended).
            gone = [
                e["reason"]
                for e in events(logs, "peer_disconnected", peer=s[1].public_key.hex()[:8])
                if e["reason"] != "duplicate_session"
            ]
            assert gone and set(gone) <= {"eof", "connection_lost"}, gone

            out2: list[str] = []
            proc2 = await _spawn(["1", "2", str(port)])  # knows no one: a must redial it
            nursery.start_soon(_lines, proc2, out2)
            with trio.fail_after(10):
                await a.wait_connected([s[1].public_key])
            a.broadcast(Kind.TX, b"after")
            await wait_for(lambda: "GOT after" in out2, 5)
            proc2.kill()
            await proc2.wait()
            nursery.cancel_scope.cancel()
