"""Chaos scenarios: real faults, injected with real signals, while the load keeps flowing.

Each scenario is ``async (network, load generator, monitor) -> None``. ``lossy-network`` puts
latency, jitter and loss on every link with Linux ``tc netem`` on loopback (root only);
partitions between single processes would need a network namespace per node and are not
built yet. It records, per fault,
how long the network went without a commit after the fault (``monitor.fault_gaps``), and the
bound it must meet (``monitor.gap_bound_s``): two view timeouts, plus the monitor's polling
interval, plus — when the fault is a restart — the time a process needs to start.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
import trio

from .loadgen import LoadGenerator
from .processes import Network
from .runner import Monitor

POLL_SLACK_S = 0.5
"""Gaps are measured by polling every 50 ms; this covers the poll and the proposer's pacing."""

Scenario = Callable[[Network, LoadGenerator, Monitor], Awaitable[None]]


def _bound(monitor: Monitor, view_timeout_s: float) -> None:
    monitor.gap_bound_s = 2 * view_timeout_s + POLL_SLACK_S  # type: ignore[attr-defined]
    monitor.fault_gaps = []  # type: ignore[attr-defined]


async def _max_height(net: Network, lg: LoadGenerator, client: httpx.AsyncClient) -> int:
    best = -1
    for i, n in enumerate(net.nodes):
        if i in lg.down:
            continue
        try:
            r = await client.get(n.rpc_url + "/v1/status", timeout=0.3)
            best = max(best, int(r.json()["height"]))
        except (httpx.HTTPError, ValueError, KeyError):
            continue
    return best


async def _record_gap(
    net: Network, lg: LoadGenerator, monitor: Monitor, what: str, since: float, before: int
) -> None:
    """Poll the live nodes every 50 ms until they commit two blocks past ``before`` (the
    first may be one the old leader had already certified; the second needs the new one)."""
    async with httpx.AsyncClient() as client:
        deadline = since + 30.0
        while time.monotonic() < deadline:
            if await _max_height(net, lg, client) >= before + 2:
                break
            await trio.sleep(0.05)
    monitor.fault_gaps.append((what, time.monotonic() - since))  # type: ignore[attr-defined]


def _sequencer(monitor: Monitor) -> int | None:
    for v in monitor.views:
        if v.status and v.status.get("sequencer") is not None:
            return int(v.status["sequencer"])
    return None


async def _kill_and_restart(
    net: Network, lg: LoadGenerator, monitor: Monitor, i: int, down_s: float, what: str
) -> None:
    node = net.nodes[i]
    lg.down.add(i)
    async with httpx.AsyncClient() as client:
        before = await _max_height(net, lg, client)
    t = time.monotonic()
    node.kill()
    await _record_gap(net, lg, monitor, f"SIGKILL {node.name} ({what})", t, before)
    await trio.sleep(down_s)
    node.start()
    node.restarts += 1
    await trio.to_thread.run_sync(lambda: _wait_answer(node, 60.0))
    lg.down.discard(i)
    net.write_state()


def _wait_answer(node: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node.status(0.5) is not None:  # type: ignore[attr-defined]
            return
        time.sleep(0.2)


def scenarios(view_timeout_s: float, seed: int = 7) -> dict[str, Scenario]:
    rng = random.Random(seed)

    async def kill_random(net: Network, lg: LoadGenerator, monitor: Monitor) -> None:
        _bound(monitor, view_timeout_s)
        await trio.sleep(4)
        while True:
            i = rng.randrange(len(net.nodes))
            await _kill_and_restart(net, lg, monitor, i, 3.0, "random validator")
            await trio.sleep(6)

    async def kill_sequencer(net: Network, lg: LoadGenerator, monitor: Monitor) -> None:
        _bound(monitor, view_timeout_s)
        await trio.sleep(4)
        while True:
            i = _sequencer(monitor)
            if i is None:
                await trio.sleep(0.5)
                continue
            await _kill_and_restart(net, lg, monitor, i, 3.0, "the sequencer")
            await trio.sleep(6)

    async def freeze(net: Network, lg: LoadGenerator, monitor: Monitor) -> None:
        _bound(monitor, view_timeout_s)
        await trio.sleep(4)
        while True:
            i = _sequencer(monitor)
            i = rng.randrange(len(net.nodes)) if i is None else i
            node = net.nodes[i]
            lg.down.add(i)
            async with httpx.AsyncClient() as client:
                before = await _max_height(net, lg, client)
            t = time.monotonic()
            node.freeze()
            await _record_gap(net, lg, monitor, f"SIGSTOP {node.name}", t, before)
            await trio.sleep(4)
            node.thaw()
            lg.down.discard(i)
            await trio.sleep(6)

    async def rolling_restart(net: Network, lg: LoadGenerator, monitor: Monitor) -> None:
        _bound(monitor, view_timeout_s)
        await trio.sleep(4)
        while True:
            for i, node in enumerate(net.nodes):
                lg.down.add(i)
                async with httpx.AsyncClient() as client:
                    before = await _max_height(net, lg, client)
                t = time.monotonic()
                node.signal(signal.SIGTERM)
                await _record_gap(net, lg, monitor, f"restart {node.name}", t, before)
                await trio.to_thread.run_sync(node.stop)
                node.start()
                await trio.to_thread.run_sync(lambda n=node: _wait_answer(n, 60.0))
                lg.down.discard(i)
                net.write_state()
                await trio.sleep(3)

    async def lossy_network(net: Network, lg: LoadGenerator, monitor: Monitor) -> None:
        """Latency, jitter and packet loss on loopback (Linux ``tc netem``; needs root)."""
        _bound(monitor, view_timeout_s)
        await trio.sleep(4)
        try:
            while True:
                async with httpx.AsyncClient() as client:
                    before = await _max_height(net, lg, client)
                t = time.monotonic()
                await trio.to_thread.run_sync(netem, NETEM_IMPAIRMENT)
                await _record_gap(
                    net, lg, monitor, f"netem {' '.join(NETEM_IMPAIRMENT)}", t, before
                )
                await trio.sleep(8)
                await trio.to_thread.run_sync(netem, None)
                await trio.sleep(5)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(netem, None)

    return {
        "kill-random": kill_random,
        "kill-sequencer": kill_sequencer,
        "freeze": freeze,
        "rolling-restart": rolling_restart,
        "lossy-network": lossy_network,
    }


NETEM_IMPAIRMENT = ("delay", "20ms", "10ms", "loss", "2%")
"""Applied to loopback for the whole network: every link gets ~20±10 ms and 2% loss."""


def netem_available() -> bool:
    """Root, ``tc``, and a kernel with the netem qdisc (probed by adding a no-op one)."""
    import os
    import shutil

    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("tc") is None:
        return False
    probe = subprocess.run(
        ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "0ms"], capture_output=True
    )
    subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
    return probe.returncode == 0


def netem(impairment: tuple[str, ...] | None) -> None:
    """Set (or, with None, clear) a netem qdisc on ``lo``."""
    subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
    if impairment:
        subprocess.run(
            ["tc", "qdisc", "add", "dev", "lo", "root", "netem", *impairment],
            check=True,
            capture_output=True,
        )
