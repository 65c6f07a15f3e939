"""Network namespaces for partitions (``testnet/netns.py``): names, set-up, cut, heal, teardown.

The layout tests are pure. The others create real namespaces (root and Linux only, skipped
elsewhere) and check with real TCP connections: across a cut a connect fails (refused at once
by a blackhole route, timing out across a silent cut), within a group and from the launcher's
side of the bridge it succeeds, and after the heal it succeeds again.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from lockstep.cli.testnet_cmd import cmd_chaos
from lockstep.testnet import netns

PORT = 7_070
needs_netns = pytest.mark.skipif(
    not netns.available(), reason="needs root and Linux network namespaces (ip netns, veth)"
)

LISTENER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {port}))
s.listen(16)
while True:
    s.accept()[0].close()
"""

CONNECT = """
import socket, sys
try:
    socket.create_connection(("{ip}", {port}), timeout=0.5).close()
except OSError as e:
    sys.exit(f"{{e.__class__.__name__}}: {{e}}")
"""


SEND_UDP = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range({count}):
    s.sendto(b"x", ("{ip}", {port}))
"""


def test_layout_names_fit_and_round_trip() -> None:
    big = netns.Layout(max(netns.SUBNETS), netns.MAX_NODES)
    names = [big.bridge, *big.veths, *(v + "p" for v in big.veths)]
    assert max(len(n) for n in names) <= 15, "interface names must fit IFNAMSIZ"
    small = netns.Layout(7, 4)
    assert small.ips == ["10.213.7.1", "10.213.7.2", "10.213.7.3", "10.213.7.4"]
    assert small.host_ip == "10.213.7.254"
    assert small.namespaces == ["ls7n0", "ls7n1", "ls7n2", "ls7n3"]
    assert small.void_ip == "10.213.7.253" and small.void_mac == "02:00:0a:d5:07:fd"
    assert netns.Layout.from_json(small.to_json()) == small


def test_partition_refuses_groups_that_do_not_cover_every_node_once() -> None:
    layout = netns.Layout(7, 4)
    for groups in ([{0}, {1, 2}], [{0, 1}, {1, 2, 3}], [{0, 1, 2, 3, 4}]):
        with pytest.raises(ValueError, match="each of the 4 nodes once"):
            netns.partition(layout, groups)


def test_chaos_partition_refuses_clearly_without_namespaces(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(netns, "available", lambda: False)
    args = argparse.Namespace(scenario="partition", seed=7)
    assert cmd_chaos(args) == 2
    assert "network namespaces" in capsys.readouterr().err


@pytest.fixture
def layout() -> Iterator[netns.Layout]:
    """Three namespaces, each with a TCP listener on ``PORT``."""
    with netns.network(3) as lay:
        listeners = [
            subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER.format(port=PORT)]
            )
            for ns in lay.namespaces
        ]
        try:
            for ip in lay.ips:
                _wait_listening(ip)
            yield lay
        finally:
            for p in listeners:
                p.kill()
                p.wait()


def _wait_listening(ip: str) -> None:
    deadline = time.monotonic() + 10.0
    while True:
        try:
            socket.create_connection((ip, PORT), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _connect_error(lay: netns.Layout, src: int, dst: int) -> str:
    """ "" if node ``src`` can open a TCP connection to node ``dst``, else the error."""
    code = CONNECT.format(ip=lay.ips[dst], port=PORT)
    cmd = ["ip", "netns", "exec", lay.namespaces[src], sys.executable, "-c", code]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return "" if done.returncode == 0 else done.stderr.strip() or f"exit {done.returncode}"


def _tx_packets(lay: netns.Layout, i: int) -> int:
    """Packets node ``i``'s interface has sent onto the bridge."""
    cmd = [
        "ip",
        "netns",
        "exec",
        lay.namespaces[i],
        "cat",
        "/sys/class/net/eth0/statistics/tx_packets",
    ]
    return int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def _host_connects(ip: str) -> bool:
    try:
        socket.create_connection((ip, PORT), timeout=1.0).close()
        return True
    except OSError:
        return False


@needs_netns
@pytest.mark.parametrize("silent", [False, True], ids=["blackhole", "silent"])
def test_set_up_cut_heal_and_tear_down(layout: netns.Layout, silent: bool) -> None:
    pairs = [(a, b) for a in range(3) for b in range(3) if a != b]
    assert [_connect_error(layout, a, b) for a, b in pairs] == [""] * 6

    netns.partition(layout, [{0}, {1, 2}], silent=silent)
    assert netns.cuts(layout) == {
        0: [layout.ips[1], layout.ips[2]],
        1: [layout.ips[0]],
        2: [layout.ips[0]],
    }
    errors = {(a, b): _connect_error(layout, a, b) for a, b in pairs}
    assert errors[1, 2] == errors[2, 1] == "", "within a group the links work"
    cut = [errors[p] for p in [(0, 1), (0, 2), (1, 0), (2, 0)]]
    # A blackhole route refuses at the sender; a silent cut loses the packets on the way.
    expected = "timed out" if silent else "Invalid argument"
    assert all(expected in e for e in cut), cut
    assert all(_host_connects(ip) for ip in layout.ips), "the bridge reaches every node"
    if silent:
        # Lost on the way, not held at the sender: a packet queued in the host (as while the
        # kernel resolves a next hop) would keep TCP from retransmitting until it is freed.
        before = _tx_packets(layout, 0)
        code = SEND_UDP.format(count=20, ip=layout.ips[1], port=PORT)
        cmd = ["ip", "netns", "exec", layout.namespaces[0], sys.executable, "-c", code]
        subprocess.run(cmd, check=True, timeout=30)
        assert _tx_packets(layout, 0) - before >= 20

    netns.partition(layout, [{0, 1}, {2}], silent=silent)  # replaces the earlier cut
    assert netns.cuts(layout) == {
        0: [layout.ips[2]],
        1: [layout.ips[2]],
        2: [layout.ips[0], layout.ips[1]],
    }
    assert _connect_error(layout, 0, 1) == "" and _connect_error(layout, 1, 2) != ""

    netns.heal(layout)
    assert netns.cuts(layout) == {0: [], 1: [], 2: []}
    assert [_connect_error(layout, a, b) for a, b in pairs] == [""] * 6


@needs_netns
def test_teardown_removes_everything_and_may_run_twice() -> None:
    lay = netns.setup(2)
    links = set(os.listdir("/sys/class/net"))
    assert lay.bridge in links and all(v in links for v in lay.veths)
    netns.teardown(lay)
    netns.teardown(lay)
    links = set(os.listdir("/sys/class/net"))
    assert lay.bridge not in links and not any(v in links for v in lay.veths)
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in spaces.split() for ns in lay.namespaces)


@needs_netns
def test_two_networks_get_different_subnets() -> None:
    with netns.network(2) as a, netns.network(2) as b:
        assert a.k != b.k
        assert not set(a.ips) & set(b.ips)
