"""Real node processes for local networks: start, stop, kill, freeze, and find them again.

Each validator runs as its own ``python -m lockstep.cli.main node run --home …`` process with
its output in ``<home>/node.log``. The launcher records every process in ``<dir>/testnet.json``
(pid, RPC URL, home) so ``lockstep testnet status`` and ``lockstep testnet down`` can find a
running network from another terminal. Faults are real signals: SIGKILL, SIGSTOP/SIGCONT,
SIGTERM for a clean stop.

A network may run in network namespaces (``netns``, for partitions): node i then starts as
``ip netns exec <namespace i> python -m lockstep.cli.main node run …`` — ``ip`` execs the node
in place, so the pid is the node's and the signals above reach it — and its RPC and metrics
are reached at its namespace address. The layout is kept in ``testnet.json`` too, so
``status`` finds the nodes and ``down`` removes the namespaces from another terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from lockstep.node.config import load_config

from . import netns as netns_mod

STATE_FILE = "testnet.json"
STOP_GRACE_S = 10.0
"""SIGTERM, then this long for a clean shutdown before SIGKILL."""


@dataclass
class NodeProcess:
    index: int
    name: str
    home: Path
    rpc_url: str
    metrics_url: str
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    restarts: int = 0
    frozen: bool = False
    netns: str | None = None
    """The network namespace the process runs in (None: the launcher's own)."""
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_file = self.home / "node.log"

    @classmethod
    def from_home(
        cls, index: int, home: Path, netns: str | None = None, host: str | None = None
    ) -> NodeProcess:
        """The node of ``home``; in namespace ``netns``, reached at ``host``, if given."""
        cfg = load_config(home / "config" / "config.toml")
        rpc = cfg.rpc.listen_address
        met = cfg.metrics.listen_address
        if host is None:
            host = "127.0.0.1" if rpc.host in ("0.0.0.0", "") else rpc.host
        return cls(
            index,
            cfg.node.moniker,
            home,
            f"http://{host}:{rpc.port}",
            f"http://{host}:{met.port}",
            netns=netns,
        )

    def start(self) -> None:
        """Start the node process (its output appended to ``node.log``)."""
        assert not self.alive(), f"{self.name} is already running"
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "lockstep.cli.main",
                "node",
                "run",
                "--home",
                str(self.home),
                "--log-format",
                "json",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C in the launcher's terminal is ours to forward
        )
        log.close()
        self.pid = self.proc.pid
        self.frozen = False

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def signal(self, sig: int) -> None:
        if self.pid is not None and self.alive():
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL: the crash a power cut would be."""
        self.signal(signal.SIGKILL)
        self._reap(5.0)
        self.frozen = False

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)
        self.frozen = False

    def stop(self, grace_s: float = STOP_GRACE_S) -> bool:
        """SIGTERM and wait; SIGKILL if it does not exit in time. True if it exited cleanly."""
        if not self.alive():
            return True
        if self.frozen:
            self.thaw()
        self.signal(signal.SIGTERM)
        if self._reap(grace_s):
            return True
        self.kill()
        return False

    def restart(self) -> None:
        if self.alive():
            self.kill()
        self.start()
        self.restarts += 1

    def _reap(self, timeout_s: float) -> bool:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout_s)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            time.sleep(0.05)
        return False

    def status(self, timeout_s: float = 1.0) -> dict[str, Any] | None:
        """The node's ``/v1/status``, or None if it does not answer."""
        try:
            r = httpx.get(self.rpc_url + "/v1/status", timeout=timeout_s)
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None


@dataclass
class Network:
    """The processes of one local network, and its state file."""

    dir: Path
    nodes: list[NodeProcess]
    netns: netns_mod.Layout | None = None
    """The namespaces the nodes run in, if any (``netns.setup`` made them)."""

    @classmethod
    def from_dir(cls, out_dir: Path, netns: netns_mod.Layout | None = None) -> Network:
        """The network in ``out_dir``; its pids (and namespaces) from ``testnet.json`` if it
        is running, or in the namespaces of ``netns`` when about to start it there."""
        homes = sorted(
            (p for p in out_dir.glob("node*") if (p / "config" / "config.toml").exists()),
            key=lambda p: int(p.name.removeprefix("node") or 0),
        )
        if not homes:
            raise FileNotFoundError(f"{out_dir}: no node homes (run `lockstep testnet up` first)")
        state = out_dir / STATE_FILE
        doc = json.loads(state.read_text()) if state.exists() else {}
        if netns is None and doc.get("netns"):
            netns = netns_mod.Layout.from_json(doc["netns"])
        if netns is not None and netns.n_nodes != len(homes):
            raise ValueError(f"{len(homes)} node homes for {netns.n_nodes} namespaces")
        nodes = [
            NodeProcess.from_home(i, h)
            if netns is None
            else NodeProcess.from_home(i, h, netns.namespaces[i], netns.ips[i])
            for i, h in enumerate(homes)
        ]
        for n, entry in zip(nodes, doc.get("nodes", []), strict=False):
            n.pid = entry.get("pid")
        return cls(out_dir, nodes, netns)

    def write_state(self, extra: dict[str, Any] | None = None) -> None:
        doc = {
            "launcher_pid": os.getpid(),
            "nodes": [
                {"name": n.name, "pid": n.pid, "rpc": n.rpc_url, "home": str(n.home)}
                for n in self.nodes
            ],
            **({"netns": self.netns.to_json()} if self.netns else {}),
            **(extra or {}),
        }
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(self.dir / STATE_FILE)

    def start_all(self) -> None:
        for n in self.nodes:
            n.start()
        self.write_state()

    def stop_all(self) -> list[bool]:
        for n in self.nodes:
            if n.frozen:
                n.thaw()
            n.signal(signal.SIGTERM)
        clean = [n.stop() for n in self.nodes]
        with contextlib.suppress(FileNotFoundError):
            (self.dir / STATE_FILE).unlink()
        return clean

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until every node answers /v1/status; raises with the log tail of one that does not."""
        deadline = time.monotonic() + timeout_s
        pending = list(self.nodes)
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if n.status(0.5) is None]
            for n in pending:
                if not n.alive():
                    raise RuntimeError(f"{n.name} exited during start-up:\n{tail(n.log_file)}")
            if pending:
                time.sleep(0.2)
        if pending:
            raise RuntimeError(
                f"{pending[0].name} did not answer in {timeout_s:.0f} s:\n"
                f"{tail(pending[0].log_file)}"
            )


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
