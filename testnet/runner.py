"""``lockstep testnet up`` and ``chaos``: real node processes, real load, a live view, and the
invariant check at the end.

The launcher is a trio program: it starts one process per validator (``processes``), waits
until each answers its RPC, runs the load generator (``loadgen``) against them, polls every
node's status for the live view (``rich``), and on Ctrl-C / ``--duration`` stops the load,
waits for the mempools to drain, runs the invariant checker (``invariants``) and stops the
nodes with SIGTERM. ``chaos`` does the same while a scenario injects faults with real signals.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from lockstep.consensus.crypto import Signer
from lockstep.node.genesis_file import read_genesis_file
from lockstep.node.keys import load_validator_keys, load_wallet
from rich.console import Console
from rich.live import Live
from rich.table import Table

from .generate import DEFAULT_P2P_PORT, generate_network
from .invariants import Report, check_network
from .loadgen import LoadGenerator
from .netns import Layout
from .processes import Network, NodeProcess

DRAIN_TIMEOUT_S = 20.0
RESTART_ALLOWANCE_S = 8.0
"""Time a restarted process needs before it can take part (interpreter start, handshake)."""


@dataclass
class NodeView:
    status: dict[str, Any] | None = None
    prev: tuple[float, int] | None = None
    orders_per_s: float = 0.0
    root_at_common: str | None = None


@dataclass
class Monitor:
    """Polls every node; keeps what the live view and the liveness check need."""

    net: Network
    views: list[NodeView] = field(default_factory=list)
    commit_times: list[float] = field(default_factory=list)
    max_height: int = 0
    common_height: int = 0
    roots_agree: bool | None = None
    checks: list[tuple[bool, str]] = field(default_factory=list)
    """What a scenario checked while it ran (ok, line); the end-of-run report lists them."""

    def __post_init__(self) -> None:
        self.views = [NodeView() for _ in self.net.nodes]

    async def poll(self, client: httpx.AsyncClient) -> None:
        now = time.monotonic()

        async def one(i: int, n: NodeProcess) -> None:
            v = self.views[i]
            try:
                r = await client.get(n.rpc_url + "/v1/status", timeout=0.5)
                v.status = r.json()
            except (httpx.HTTPError, ValueError):
                v.status = None
                return
            txs = int(v.status.get("txs_committed", 0))
            if v.prev is not None and now > v.prev[0]:
                rate = (txs - v.prev[1]) / (now - v.prev[0])
                v.orders_per_s = 0.7 * v.orders_per_s + 0.3 * max(0.0, rate)
            v.prev = (now, txs)

        async with trio.open_nursery() as nursery:
            for i, n in enumerate(self.net.nodes):
                nursery.start_soon(one, i, n)
        heights = [int(v.status["height"]) for v in self.views if v.status]
        if heights:
            top = max(heights)
            if top > self.max_height:
                self.commit_times.append(now)
                self.max_height = top
            self.common_height = min(heights)
            await self._roots(client)

    async def _roots(self, client: httpx.AsyncClient) -> None:
        h = self.common_height
        if h < 1:
            return
        roots = []
        for i, n in enumerate(self.net.nodes):
            if self.views[i].status is None:
                self.views[i].root_at_common = None
                continue
            try:
                r = await client.get(
                    n.rpc_url + "/v1/state_roots", params={"from": h, "to": h}, timeout=0.5
                )
                rows = r.json()["roots"]
                self.views[i].root_at_common = rows[0]["state_root"] if rows else None
            except (httpx.HTTPError, ValueError, KeyError, IndexError):
                self.views[i].root_at_common = None
            roots.append(self.views[i].root_at_common)
        present = [r for r in roots if r]
        self.roots_agree = len(set(present)) <= 1 if present else None

    def gap_after(self, t: float) -> float:
        """Seconds from ``t`` to the first commit seen after it (now, if none yet)."""
        for c in self.commit_times:
            if c > t:
                return c - t
        return time.monotonic() - t


def render(monitor: Monitor, lg: LoadGenerator | None, elapsed_s: float, title: str) -> Table:
    t = Table(title=f"{title} — {elapsed_s:5.0f} s", title_justify="left")
    for col in (
        "node",
        "state",
        "height",
        "view",
        "epoch",
        "sequencer",
        "peers",
        "mempool",
        "orders/s",
        "p50 ms",
        "p99 ms",
        f"root @ {monitor.common_height}",
    ):
        t.add_column(col, justify="right" if col not in ("node", "state") else "left")
    for i, (n, v) in enumerate(zip(monitor.net.nodes, monitor.views, strict=True)):
        s = v.status
        p50, p99 = lg.stats.latency_percentiles(i) if lg else (None, None)
        state = "frozen" if n.frozen else ("up" if s else ("down" if not n.alive() else "starting"))
        root = v.root_at_common or "-"
        if monitor.roots_agree is False and v.root_at_common:
            root = f"[bold red]{root[:12]} ≠[/]"
        else:
            root = root[:12]
        t.add_row(
            n.name,
            state,
            str(s["height"]) if s else "-",
            str(s["view"]) if s else "-",
            str(s["epoch"]) if s else "-",
            str(s.get("sequencer_name") or "-") if s else "-",
            str(s["peers"]) if s else "-",
            str(s["mempool"]) if s else "-",
            f"{v.orders_per_s:6.1f}" if s else "-",
            f"{p50:.0f}" if p50 is not None else "-",
            f"{p99:.0f}" if p99 is not None else "-",
            root,
        )
    if lg is not None:
        st = lg.stats
        refused = ", ".join(f"{k}={v}" for k, v in sorted(st.refused.items())) or "none"
        t.caption = (
            f"submitted {st.submitted}  accepted {st.accepted}  errors {st.errors}  "
            f"refused: {refused}"
        )
    return t


def load_actors(net_dir: Path) -> tuple[list[Signer], list[Signer]]:
    validators = [
        load_validator_keys(h / "config" / "validator_key.json").signer
        for h in sorted(net_dir.glob("node*"))
        if (h / "config").exists()
    ]
    traders = [load_wallet(p) for p in sorted((net_dir / "wallets").glob("trader*.json"))]
    return validators, traders


@dataclass
class RunResult:
    report: Report | None
    duration_s: float
    stats: dict[str, Any]


async def run_testnet(
    out_dir: Path,
    n_nodes: int,
    duration_s: float | None,
    rate_per_s: float,
    console: Console,
    scenario: Callable[[Network, LoadGenerator, Monitor], Any] | None = None,
    title: str = "lockstep testnet",
    live: bool = True,
    fresh: bool = True,
    base_port: int = DEFAULT_P2P_PORT,
    netns: Layout | None = None,
) -> RunResult:
    """Run a network for ``duration_s`` (None: until Ctrl-C) under load, with ``scenario``'s
    faults, then drain and check. With ``netns`` every node runs in its namespace (made by the
    caller, who removes it after), advertising its namespace address."""
    if fresh or not (out_dir / "genesis.toml").exists():
        if out_dir.exists() and any(out_dir.iterdir()):
            _clear(out_dir)
        hosts = netns.ips if netns is not None else None
        generate_network(out_dir, n_validators=n_nodes, base_port=base_port, hosts=hosts)
    genesis = read_genesis_file(out_dir / "genesis.toml")
    net = Network.from_dir(out_dir, netns)
    validators, traders = load_actors(out_dir)
    console.print(
        f"[bold]{title}[/]: {len(net.nodes)} validators, chain {genesis.chain_id.hex()[:16]}…, "
        f"files in {out_dir}"
    )
    net.start_all()
    started = time.monotonic()
    report: Report | None = None
    lg = LoadGenerator(genesis, [n.rpc_url for n in net.nodes], validators, traders, rate_per_s)
    monitor = Monitor(net)
    try:
        await trio.to_thread.run_sync(net.wait_ready, 60.0)
        console.print(f"all {len(net.nodes)} nodes answer; RPC at {net.nodes[0].rpc_url} …")
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:
            with trio.CancelScope():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(lg.run, client)
                    stop = trio.Event()
                    nursery.start_soon(_wait_for_stop_signal, stop, console)
                    if scenario is not None:
                        nursery.start_soon(scenario, net, lg, monitor)
                    deadline = started + duration_s if duration_s else float("inf")
                    with (
                        Live(
                            console=console,
                            refresh_per_second=2,
                            transient=False,
                            auto_refresh=False,
                        )
                        if live
                        else _NoLive() as view
                    ):
                        while time.monotonic() < deadline and not stop.is_set():
                            await monitor.poll(client)
                            view.update(
                                render(monitor, lg, time.monotonic() - started, title), refresh=True
                            )
                            await trio.sleep(0.5)
                    nursery.cancel_scope.cancel()
            report = await _drain_and_check(client, net, lg, monitor, console)
    except KeyboardInterrupt:
        console.print("interrupted: stopping the network")
    finally:
        with trio.CancelScope(shield=True):
            clean = await trio.to_thread.run_sync(net.stop_all)
        console.print(f"stopped {len(clean)} nodes ({sum(clean)} cleanly)")
    elapsed = time.monotonic() - started
    stats = {
        "submitted": lg.stats.submitted,
        "accepted": lg.stats.accepted,
        "refused": dict(lg.stats.refused),
        "height": monitor.max_height,
    }
    return RunResult(report, elapsed, stats)


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None


async def _drain_and_check(
    client: httpx.AsyncClient,
    net: Network,
    lg: LoadGenerator,
    monitor: Monitor,
    console: Console,
) -> Report:
    for i, n in enumerate(net.nodes):
        if n.frozen:
            n.thaw()
        if i in lg.down and n.alive():
            # A fault was under way when the run ended (e.g. a SIGTERM sent, the process still
            # shutting down): let it finish, then bring the node back.
            await trio.to_thread.run_sync(n.stop)
        if not n.alive():
            n.start()
    await trio.to_thread.run_sync(net.wait_ready, 60.0)
    lg.down.clear()
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    quiet = 0
    while time.monotonic() < deadline and quiet < 2:
        await monitor.poll(client)
        statuses = [v.status for v in monitor.views]
        quiet = quiet + 1 if all(s and s["mempool"] == 0 for s in statuses) else 0
        await trio.sleep(0.5)
    gaps = getattr(monitor, "fault_gaps", [])
    bound = getattr(monitor, "gap_bound_s", None)
    report = await check_network(
        client, [n.rpc_url for n in net.nodes], lg.acked, gaps, bound, monitor.checks
    )
    for line in report.lines:
        console.print(("[red]" if line.startswith("FAIL") else "[green]") + line + "[/]")
    return report


def _clear(out_dir: Path) -> None:
    state = out_dir / "testnet.json"
    if state.exists():
        raise RuntimeError(
            f"{out_dir} holds a running testnet; `lockstep testnet down --dir {out_dir}` first"
        )
    for p in out_dir.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def install_sigterm_as_interrupt() -> None:
    """``testnet down`` from another terminal sends SIGTERM: stop as on Ctrl-C."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


async def _wait_for_stop_signal(stop: trio.Event, console: Console) -> None:
    """The first Ctrl-C (or SIGTERM from ``testnet down``) ends the run cleanly: the load stops,
    the invariants are checked, the nodes stop, a summary is printed. A second one aborts."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            console.print("stopping: draining, checking invariants, stopping the nodes …")
            stop.set()
            return
