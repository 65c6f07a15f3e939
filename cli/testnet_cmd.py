"""``lockstep testnet up | status | down | chaos``: local networks of real node processes."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

DEFAULT_DIR = "./lockstep-testnet"
DOWN_WAIT_S = 60.0
"""How long ``down`` waits for the launcher to drain, check and stop its nodes."""
NETNS_SCENARIOS = frozenset({"partition", "silent-partition"})
"""Chaos scenarios that run the nodes in network namespaces (``testnet/netns.py``)."""


def cmd_up(args: argparse.Namespace) -> int:
    import trio
    from lockstep.testnet.runner import install_sigterm_as_interrupt, run_testnet

    from .output import console as wide_console

    console = wide_console()
    install_sigterm_as_interrupt()
    duration = args.duration if args.duration and args.duration > 0 else None
    if duration is None:
        console.print("running until Ctrl-C (or `lockstep testnet down` from another terminal)")
    try:
        result = trio.run(
            run_testnet,
            Path(args.dir),
            args.nodes,
            duration,
            args.rate,
            console,
            None,
            "lockstep testnet",
            not args.no_live,
            not args.keep,
            args.base_port,
        )
    except KeyboardInterrupt:
        return 130
    return _summary(console, result, args.json)


def _summary(console: object, result: object, as_json: bool) -> int:
    r = result.report  # type: ignore[attr-defined]
    doc = {
        "ok": bool(r and r.ok),
        "duration_s": round(result.duration_s, 1),  # type: ignore[attr-defined]
        **result.stats,  # type: ignore[attr-defined]
        "checks": r.lines if r else [],
        "figures": r.figures if r else {},
    }
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        c = console
        c.print(  # type: ignore[attr-defined]
            f"summary: {doc['duration_s']} s, height {doc['height']}, submitted "
            f"{doc['submitted']}, accepted {doc['accepted']}, invariants "
            + ("[green]hold[/]" if doc["ok"] else "[red]BROKEN[/]")
        )
    return 0 if doc["ok"] else 1


def cmd_chaos(args: argparse.Namespace) -> int:
    import trio
    from lockstep.consensus.genesis import default_timing
    from lockstep.testnet import netns
    from lockstep.testnet.chaos import netem_available, scenarios
    from lockstep.testnet.runner import install_sigterm_as_interrupt, run_testnet

    from .output import console as wide_console

    table = scenarios(default_timing().view_timeout_ms / 1000, seed=args.seed)
    if args.scenario not in table:
        print(f"unknown scenario {args.scenario!r}; one of {', '.join(table)}", file=sys.stderr)
        return 2
    if args.scenario == "lossy-network" and not netem_available():
        print(
            "lossy-network needs root, `tc` and a kernel with the netem qdisc; this "
            "machine has not all of them",
            file=sys.stderr,
        )
        return 2
    if args.scenario in NETNS_SCENARIOS and not netns.available():
        print(
            f"{args.scenario} needs Linux network namespaces: root, iproute2 (`ip`) and a "
            "kernel that lets it add namespaces and veth pairs; this machine has not all of them",
            file=sys.stderr,
        )
        return 2
    console = wide_console()
    install_sigterm_as_interrupt()
    try:
        with contextlib.ExitStack() as stack:
            layout = None
            if args.scenario in NETNS_SCENARIOS:
                layout = stack.enter_context(netns.network(args.nodes))  # removed on any exit
                console.print(
                    f"nodes in namespaces {layout.namespaces[0]}…{layout.namespaces[-1]}, "
                    f"addresses {layout.ips[0]}…{layout.ips[-1]}, bridge {layout.bridge}"
                )
            result = trio.run(
                run_testnet,
                Path(args.dir),
                args.nodes,
                args.duration,
                args.rate,
                console,
                table[args.scenario],
                f"chaos: {args.scenario}",
                not args.no_live,
                True,
                args.base_port,
                layout,
            )
    except KeyboardInterrupt:
        return 130
    return _summary(console, result, args.json)


def cmd_status(args: argparse.Namespace) -> int:
    from lockstep.testnet.processes import Network
    from rich.table import Table

    from .output import console

    net = Network.from_dir(Path(args.dir))
    rows = []
    for n in net.nodes:
        s = n.status()
        rows.append({"node": n.name, "pid": n.pid, "alive": n.alive(), "status": s})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    t = Table(title=f"testnet in {args.dir}")
    for col in ("node", "pid", "height", "view", "epoch", "sequencer", "peers", "mempool", "root"):
        t.add_column(col)
    for r in rows:
        s = r["status"] or {}
        t.add_row(
            r["node"],
            str(r["pid"] or "-"),
            str(s.get("height", "down")),
            str(s.get("view", "-")),
            str(s.get("epoch", "-")),
            str(s.get("sequencer_name", "-")),
            str(s.get("peers", "-")),
            str(s.get("mempool", "-")),
            (s.get("state_root") or "-")[:16],
        )
    console().print(t)
    return 0 if all(r["status"] for r in rows) else 1


def cmd_down(args: argparse.Namespace) -> int:
    """Ask the launcher to stop (it drains, checks and stops its nodes); stop the nodes
    directly only if no launcher is running."""
    import os
    import signal
    import time

    from lockstep.testnet.processes import STATE_FILE, Network

    out = Path(args.dir)
    state = out / STATE_FILE
    launcher = json.loads(state.read_text()).get("launcher_pid") if state.exists() else None
    if launcher and launcher != os.getpid():
        with contextlib.suppress(ProcessLookupError):
            os.kill(launcher, signal.SIGTERM)
            deadline = time.monotonic() + DOWN_WAIT_S
            while time.monotonic() < deadline:
                os.kill(launcher, 0)  # raises ProcessLookupError once it has exited
                time.sleep(0.2)
    net = Network.from_dir(out)
    clean = net.stop_all()
    print(f"stopped {len(clean)} nodes in {out}")
    if net.netns is not None:  # the launcher did not get to remove them
        from lockstep.testnet import netns

        netns.teardown(net.netns)
        print(f"removed namespaces {', '.join(net.netns.namespaces)} and {net.netns.bridge}")
    return 0


def register_actions(tsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = tsub.add_parser("up", help="start a local testnet of real nodes trading real orders")
    up.add_argument("--nodes", type=int, default=4, help="validators (default %(default)s)")
    up.add_argument("--dir", default=DEFAULT_DIR, help="where the network's files go")
    up.add_argument("--duration", type=float, default=0, help="seconds to run (0: until Ctrl-C)")
    up.add_argument("--rate", type=float, default=60.0, help="target orders/s of the load")
    up.add_argument("--keep", action="store_true", help="reuse the existing network in --dir")
    up.add_argument("--no-live", action="store_true", help="no live view (logs and summary only)")
    up.add_argument("--json", action="store_true", help="print the summary as JSON")
    up.add_argument("--base-port", type=int, default=26_656, help="p2p port of node0 (+10 a node)")
    up.set_defaults(func=cmd_up)

    chaos = tsub.add_parser("chaos", help="run a fault scenario under load, then check invariants")
    chaos.add_argument(
        "--scenario",
        default="kill-sequencer",
        help="kill-random, kill-sequencer, freeze, rolling-restart, lossy-network (root, netem), "
        "partition or silent-partition (root, network namespaces)",
    )
    chaos.add_argument("--duration", type=float, default=60.0, help="seconds of chaos")
    chaos.add_argument("--nodes", type=int, default=4)
    chaos.add_argument("--dir", default="./lockstep-chaos")
    chaos.add_argument("--rate", type=float, default=60.0)
    chaos.add_argument("--seed", type=int, default=7)
    chaos.add_argument("--no-live", action="store_true")
    chaos.add_argument("--json", action="store_true")
    chaos.add_argument("--base-port", type=int, default=36_656, help="p2p port of node0")
    chaos.set_defaults(func=cmd_chaos)

    status = tsub.add_parser("status", help="status of a running testnet (another terminal)")
    status.add_argument("--dir", default=DEFAULT_DIR)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    down = tsub.add_parser("down", help="stop a running testnet")
    down.add_argument("--dir", default=DEFAULT_DIR)
    down.set_defaults(func=cmd_down)
