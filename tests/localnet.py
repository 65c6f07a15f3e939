"""Helpers for integration tests: a real network of node processes on 127.0.0.1."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from lockstep.testnet.generate import generate_network
from lockstep.testnet.processes import Network

PORTS_PER_NODE = 10


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(n_nodes: int) -> int:
    """A base port whose p2p/RPC/metrics ports (base + 10 i + 0..2) are all free, below the
    kernel's ephemeral range: there, any outgoing connection (a dial, a test's HTTP client)
    could take a port between this check and the node's bind."""
    rng = random.Random()
    top = min(_ephemeral_start(), 60_000) - PORTS_PER_NODE * n_nodes
    for _ in range(200):
        base = rng.randrange(10_000, top, 100)
        if all(_free(base + PORTS_PER_NODE * i + k) for i in range(n_nodes) for k in range(3)):
            return base
    raise RuntimeError("no free port range")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


@contextmanager
def local_network(tmp: Path, n_nodes: int = 4, traders: int = 4) -> Iterator[Network]:
    """Generate, start, wait until every node answers; stop (SIGTERM, then SIGKILL) after."""
    generate_network(
        tmp, n_validators=n_nodes, n_traders=traders, base_port=free_base_port(n_nodes)
    )
    net = Network.from_dir(tmp)
    net.start_all()
    try:
        net.wait_ready(60.0)
        yield net
    finally:
        net.stop_all()


def status(url: str) -> dict[str, Any]:
    return httpx.get(url + "/v1/status", timeout=5.0).json()


def wait_for(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def height(url: str) -> int:
    try:
        return int(status(url)["height"])
    except (httpx.HTTPError, ValueError, KeyError):
        return -1


def roots(url: str, first: int, last: int) -> dict[int, str]:
    doc = httpx.get(url + "/v1/state_roots", params={"from": first, "to": last}, timeout=5).json()
    return {int(r["height"]): r["state_root"] for r in doc["roots"]}


def wallet(*args: str, check: bool = True) -> dict[str, Any]:
    """Run ``lockstep wallet … --json`` as a subprocess; return its JSON (or the error)."""
    proc = subprocess.run(
        [sys.executable, "-m", "lockstep.cli.main", "wallet", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"wallet {' '.join(args)} failed: {proc.stderr.strip()}")
    if proc.returncode != 0:
        return {"exit": proc.returncode, "stderr": proc.stderr.strip()}
    return json.loads(proc.stdout)


@contextmanager
def one_network_at_a_time() -> Iterator[None]:
    """Serialise tests that run networks of processes, across test workers: two such tests on
    two cores at once would measure each other, not the code (view timeouts, failover gaps)."""
    import fcntl
    import tempfile

    lock_path = Path(tempfile.gettempdir()) / "lockstep-tests-processes.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
