"""Chaos scenarios: real faults, injected with real signals, while the load keeps flowing.

Each scenario is ``async (network, load generator, monitor) -> None``. ``kill-sequencer``,
``kill-random``, ``freeze`` and ``rolling-restart`` send signals to node processes.
``lossy-network`` puts latency, jitter and loss on every link with Linux ``tc netem`` on
loopback (root, and a kernel with netem). ``partition`` cuts links between nodes that run in
one network namespace each (``netns``; root and Linux namespaces): it isolates the sequencer
from the rest, then splits the network in halves, healing after each. ``silent-partition``
does the same with cuts that lose packets on the way instead of refusing them at the sender,
so TCP backs off its retransmissions as behind a failed switch.

A scenario records, per fault, how long the network went without a commit after the fault or
its heal (``monitor.fault_gaps``), and the bound it must meet (``monitor.gap_bound_s``,
``gap_bound_s``: two of the genesis' view timeouts plus the poll slack; why two, below). A
restarted node is not waited for: the gap is the live nodes' (from the signal to two new
heights). What else it checks as it runs goes to ``monitor.checks``.
"""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
import trio
from lockstep.node.genesis_file import read_genesis_file

from . import netns
from .loadgen import LoadGenerator
from .processes import Network
from .runner import Monitor

POLL_SLACK_S = 0.5
"""Gaps are measured by polling every 50 ms; this covers the poll and the proposer's pacing."""

GAP_BOUND_VIEW_TIMEOUTS = 2
"""A single fault's commit gap, in the genesis' (base) view timeouts, that a chaos run allows.

Derived, not tuned: after one validator stops, the live ones wait out at most one view
timeout (the stopped leader's view, or the view whose block it was to certify), then one TC
round and two blocks, a few message delays and block intervals. The simulator's crash sweep
(``bench/sim.py``: the leader of every view offset of an epoch, crashed or restarted, in the
testnet's timing) measures 1.03-1.05 for n = 4, 7, 10. Two is the protocol's promise (a backup
leads within two view timeouts, ARCHITECTURE.md), and leaves 0.95 of a view timeout for a
loaded two-core machine to schedule three node processes and the poller. The 3.06 s gaps once
seen here (bound 2.50 s) were not load: a sequencer that stopped at an epoch's end and came
first in the next cost two timeouts, the second doubled (3.05 in the sweep before the
election's reputation rule), which the bound rightly refused."""


def gap_bound_s(view_timeout_ms: int) -> float:
    """``GAP_BOUND_VIEW_TIMEOUTS`` view timeouts plus the poll slack, in seconds."""
    return GAP_BOUND_VIEW_TIMEOUTS * view_timeout_ms / 1000 + POLL_SLACK_S

PARTITION_HOLD_S = 5.0
"""How long each partition lasts: five view timeouts, well past a failover, and under the
transport's idle timeout (10 s), so connections stay open through the cut as they would
through a short outage of a real network, and TCP delivers what was queued once it heals."""
SPLIT_SETTLE_S = 1.0
"""A split may still commit what was certified before the cut (a QC in flight); from this long
after the cut until the heal, no node may commit."""
CONVERGE_TIMEOUT_S = 15.0
"""After a heal, every node must reach the height the network had at the heal within this."""

Scenario = Callable[[Network, LoadGenerator, Monitor], Awaitable[None]]


def _bound(monitor: Monitor, net: Network, view_timeout_s: float) -> None:
    """Set the gap bound from the running network's genesis (the timing its nodes use), or
    from ``view_timeout_s`` if the network has no genesis file."""
    genesis = net.dir / "genesis.toml"
    if genesis.exists():
        view_timeout_ms = read_genesis_file(genesis).timing.view_timeout_ms
    else:
        view_timeout_ms = round(view_timeout_s * 1000)
    bound = gap_bound_s(view_timeout_ms)
    monitor.gap_bound_s = bound  # type: ignore[attr-defined]
    monitor.fault_gaps = []  # type: ignore[attr-defined]


async def _max_height(
    net: Network, lg: LoadGenerator, client: httpx.AsyncClient, among: set[int] | None = None
) -> int:
    """The highest committed height of the live nodes (of those in ``among``, if given)."""
    best = -1
    for i, n in enumerate(net.nodes):
        if i in lg.down or (among is not None and i not in among):
            continue
        try:
            r = await client.get(n.rpc_url + "/v1/status", timeout=0.3)
            best = max(best, int(r.json()["height"]))
        except (httpx.HTTPError, ValueError, KeyError):
            continue
    return best


async def _record_gap(
    net: Network,
    lg: LoadGenerator,
    monitor: Monitor,
    what: str,
    since: float,
    before: int,
    among: set[int] | None = None,
) -> None:
    """Poll the live nodes (those in ``among``, if given) every 50 ms until they commit two
    blocks past ``before`` (the first may be one the old leader had already certified; the
    second needs the new one)."""
    async with httpx.AsyncClient() as client:
        deadline = since + 30.0
        while time.monotonic() < deadline:
            if await _max_height(net, lg, client, among) >= before + 2:
                break
            await trio.sleep(0.05)
    monitor.fault_gaps.append((what, time.monotonic() - since))  # type: ignore[attr-defined]


async def _heights(net: Network, client: httpx.AsyncClient) -> list[int | None]:
    """Every node's committed height (None where it does not answer)."""
    out: list[int | None] = []
    for n in net.nodes:
        try:
            r = await client.get(n.rpc_url + "/v1/status", timeout=0.3)
            out.append(int(r.json()["height"]))
        except (httpx.HTTPError, ValueError, KeyError):
            out.append(None)
    return out


async def _converge(net: Network, monitor: Monitor, what: str, since: float, target: int) -> None:
    """Poll until every node has committed ``target``; record how long it took, or that it
    did not within ``CONVERGE_TIMEOUT_S``."""
    async with httpx.AsyncClient() as client:
        while True:
            hs = await _heights(net, client)
            elapsed = time.monotonic() - since
            if all(h is not None and h >= target for h in hs):
                monitor.checks.append(
                    (True, f"{what}: every node at height {target} within {elapsed:.2f} s")
                )
                return
            if elapsed > CONVERGE_TIMEOUT_S:
                monitor.checks.append(
                    (
                        False,
                        f"{what}: nodes at heights {hs}, not all at {target}, "
                        f"{CONVERGE_TIMEOUT_S:.0f} s after the heal",
                    )
                )
                return
            await trio.sleep(0.05)


async def _sequencer_of_new_epoch(net: Network, timeout_s: float = 30.0) -> int | None:
    """Wait until every node is in the next epoch; its sequencer. Leadership moves at epoch
    boundaries (every ``epoch_views`` views, a few seconds), so a fault aimed at the sequencer
    is sent early in an epoch, not while some nodes are still in the last one."""

    async def now(client: httpx.AsyncClient) -> tuple[int, int, int | None]:
        """(lowest epoch, highest epoch, sequencer named by a node in the highest view)."""
        seen = []
        for n in net.nodes:
            try:
                st = (await client.get(n.rpc_url + "/v1/status", timeout=0.3)).json()
                seen.append((int(st["view"]), int(st["epoch"]), st.get("sequencer")))
            except (httpx.HTTPError, ValueError, KeyError):
                continue
        if not seen:
            return -1, -1, None
        top = max(seen, key=lambda x: x[0])
        return min(e for _, e, _ in seen), top[1], top[2]

    async with httpx.AsyncClient() as client:
        _, epoch, _ = await now(client)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lowest, _, leader = await now(client)
            if lowest > epoch and leader is not None:
                return int(leader)
            await trio.sleep(0.05)
    return None


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
        _bound(monitor, net, view_timeout_s)
        await trio.sleep(4)
        while True:
            i = rng.randrange(len(net.nodes))
            await _kill_and_restart(net, lg, monitor, i, 3.0, "random validator")
            await trio.sleep(6)

    async def kill_sequencer(net: Network, lg: LoadGenerator, monitor: Monitor) -> None:
        _bound(monitor, net, view_timeout_s)
        await trio.sleep(4)
        while True:
            i = _sequencer(monitor)
            if i is None:
                await trio.sleep(0.5)
                continue
            await _kill_and_restart(net, lg, monitor, i, 3.0, "the sequencer")
            await trio.sleep(6)

    async def freeze(net: Network, lg: LoadGenerator, monitor: Monitor) -> None:
        _bound(monitor, net, view_timeout_s)
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
        _bound(monitor, net, view_timeout_s)
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
        _bound(monitor, net, view_timeout_s)
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

    async def partition(
        net: Network, lg: LoadGenerator, monitor: Monitor, silent: bool = False
    ) -> None:
        """Cut links between node namespaces (``netns``), round after round: (a) the sequencer
        alone, while the other three keep committing; (b) halves, where nobody can. The load
        keeps going to every node, the minority side included."""
        layout = net.netns
        if layout is None:
            raise RuntimeError("the partition scenario needs the nodes in network namespaces")
        _bound(monitor, net, view_timeout_s)
        n = len(net.nodes)
        await trio.sleep(4)
        try:
            while True:
                i = await _sequencer_of_new_epoch(net)
                i = rng.randrange(n) if i is None else i
                alone = [{i}, set(range(n)) - {i}]
                await _cut(net, lg, monitor, layout, alone, silent, expect_commits=True)
                await trio.sleep(4)
                order = list(range(n))
                rng.shuffle(order)
                halves = [set(order[: n // 2]), set(order[n // 2 :])]
                await _cut(net, lg, monitor, layout, halves, silent, expect_commits=False)
                await trio.sleep(4)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(netns.heal, layout)

    return {
        "kill-random": kill_random,
        "kill-sequencer": kill_sequencer,
        "freeze": freeze,
        "rolling-restart": rolling_restart,
        "lossy-network": lossy_network,
        "partition": partition,
        "silent-partition": functools.partial(partition, silent=True),
    }


def _groups(groups: list[set[int]]) -> str:
    return " | ".join(",".join(f"node{i}" for i in sorted(g)) for g in groups)


async def _cut(
    net: Network,
    lg: LoadGenerator,
    monitor: Monitor,
    layout: netns.Layout,
    groups: list[set[int]],
    silent: bool,
    expect_commits: bool,
) -> None:
    """One partition: cut, hold ``PARTITION_HOLD_S``, heal, and wait for every node.

    With ``expect_commits`` a quorum stays connected, so the gap since the cut must meet the
    bound (as for a killed sequencer). Without, no node may commit from ``SPLIT_SETTLE_S``
    after the cut until the heal. Either way the gap from the heal to two new commits must
    meet the bound, and every node must then reach the network's height."""
    desc = _groups(groups) + (" (silent)" if silent else "")
    settled = None
    quorum = max(groups, key=len)  # with expect_commits: the side that must go on committing
    t = time.monotonic()
    await trio.to_thread.run_sync(netns.partition, layout, groups, silent)
    async with httpx.AsyncClient() as client:  # what was committed before the cut took effect
        before = await _max_height(net, lg, client, quorum)
    if expect_commits:
        # Only the quorum side counts: a cut-off leader may still commit what it had certified.
        await _record_gap(net, lg, monitor, f"partition {desc}", t, before, quorum)
    else:
        await trio.sleep(SPLIT_SETTLE_S)
        async with httpx.AsyncClient() as client:
            settled = await _max_height(net, lg, client)
    await trio.sleep(max(0.0, t + PARTITION_HOLD_S - time.monotonic()))
    async with httpx.AsyncClient() as client:
        at_heal = await _max_height(net, lg, client)
    if not expect_commits:
        monitor.checks.append(
            (
                at_heal == settled,
                f"split {desc}: committed heights {settled} → {at_heal} "
                f"from {SPLIT_SETTLE_S:.0f} s after the cut to the heal (no quorum: none)",
            )
        )
    healed = time.monotonic()
    await trio.to_thread.run_sync(netns.heal, layout)
    await _record_gap(net, lg, monitor, f"heal of {desc}", healed, at_heal)
    await _converge(net, monitor, f"heal of {desc}", healed, at_heal)


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
