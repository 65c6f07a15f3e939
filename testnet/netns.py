"""Network namespaces for a local network: one per node, joined by a bridge, so links can be cut.

Theory of operation. On one machine every node normally listens on 127.0.0.1, and nothing can
come between two of them. Here each node gets its own Linux network namespace, and the
namespaces are wired like hosts on one switch::

    root namespace:  bridge lsbr<k>, address 10.213.<k>.254/24  (the launcher, load, checks)
                        |            |            |
    veth:            ls<k>v0      ls<k>v1      ls<k>v2   …   (host ends, on the bridge)
                        |            |            |
    namespace:       ls<k>n0      ls<k>n1      ls<k>n2   …   eth0 = 10.213.<k>.<i+1>/24, lo up

``<k>`` (1-250) is a /24 no interface or route of this machine uses and no other network of
ours holds; it is also the network's tag in every name, which keeps names unique per network
and within the kernel's 15-character limit for interfaces. A node listens on 0.0.0.0 in its
namespace and advertises its namespace address to the others (``generate_network(hosts=…)``).

A *partition* into groups adds, inside each node's namespace, ``ip route add blackhole
<peer>/32`` for every node in another group: the kernel refuses those packets at the sender (a
connect fails with EINVAL; a segment of an established connection is not sent, and goes out
with the application's next write once the route is gone). Both ends of a link carry the route,
so both directions are cut, and the connections stay open unless the nodes' own timeouts close
them. A *silent* partition routes each cut peer through an address nobody holds
(10.213.<k>.253) whose neighbour entry is fixed (``nud permanent``) to a MAC address nobody
holds either: segments leave the sender's interface and are lost on the bridge, as behind a
failed switch, so TCP retransmits on its own timer and backs off exactly as on a real outage.
The entry must be fixed: were the kernel left to resolve the address by ARP, it would hold
every segment in the neighbour's queue for the whole resolution (six probes a second apart
here), and TCP does not retransmit a segment whose earlier copy is still queued in the host —
so a cut link would carry nothing until ARP gave up, about 6 s after the cut, whenever the heal
came. The bridge address is in no group, so the launcher, the load generator and the
invariant checker still reach every node's RPC. ``heal`` deletes the routes of either kind.

Everything here runs ``ip`` (iproute2) as root; :func:`available` says whether this machine
allows it, and scenarios that need namespaces refuse clearly where it does not.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Layout",
    "NetnsError",
    "available",
    "cuts",
    "heal",
    "network",
    "partition",
    "setup",
    "teardown",
]

SUBNET_PREFIX = "10.213"
"""Node addresses are 10.213.<k>.<i+1>: a private (RFC 1918) range rarely used by hosts."""
SUBNETS = range(1, 251)
"""Candidate third octets ``k``; two-digit node counts keep every name within 15 chars."""
HOST_OCTET = 254
"""The bridge (the root namespace's address on the network): 10.213.<k>.254."""
VOID_OCTET = 253
"""Never assigned: ``partition(silent=True)`` routes cut peers through it."""
VOID_MAC_PREFIX = "02:00:0a:d5"
"""The void address's fixed link-layer address is 02:00:0a:d5:<k>:fd: locally administered
(the 02 bit), never given to an interface, so frames sent to it reach no one (the bridge
floods them and every interface drops them as not its own)."""
MAX_NODES = 99
"""Node i is 10.213.<k>.<i+1>, and ``ls<k>v<i>`` must fit IFNAMSIZ - 1 = 15 characters."""
IP_TIMEOUT_S = 10.0
"""One ``ip`` command; they take milliseconds, so this only bounds a wedged one."""
LOCK_FILE = Path(tempfile.gettempdir()) / "lockstep-netns.lock"
"""Held while a free /24 is chosen and claimed, so two launchers never take the same one."""


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message names the command and what it printed."""


@dataclass(frozen=True, slots=True)
class Layout:
    """The names and addresses of one network's namespaces (all derived from ``k`` and n)."""

    k: int
    n_nodes: int

    def __post_init__(self) -> None:
        assert self.k in SUBNETS, self.k
        assert 1 <= self.n_nodes <= MAX_NODES, self.n_nodes

    @property
    def bridge(self) -> str:
        return f"lsbr{self.k}"

    @property
    def host_ip(self) -> str:
        return f"{SUBNET_PREFIX}.{self.k}.{HOST_OCTET}"

    @property
    def void_ip(self) -> str:
        """An address of the subnet no one holds: a route through it leads nowhere."""
        return f"{SUBNET_PREFIX}.{self.k}.{VOID_OCTET}"

    @property
    def void_mac(self) -> str:
        """The link-layer address the void address is fixed to (no interface holds it)."""
        return f"{VOID_MAC_PREFIX}:{self.k:02x}:{VOID_OCTET:02x}"

    @property
    def namespaces(self) -> list[str]:
        return [f"ls{self.k}n{i}" for i in range(self.n_nodes)]

    @property
    def veths(self) -> list[str]:
        """Host ends of the veth pairs (the namespace ends are renamed ``eth0``)."""
        return [f"ls{self.k}v{i}" for i in range(self.n_nodes)]

    @property
    def ips(self) -> list[str]:
        return [f"{SUBNET_PREFIX}.{self.k}.{i + 1}" for i in range(self.n_nodes)]

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "n_nodes": self.n_nodes,
            "namespaces": self.namespaces,
            "ips": self.ips,
            "bridge": self.bridge,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Layout:
        return cls(int(doc["k"]), int(doc["n_nodes"]))


def _ip(*args: str, stdin: str | None = None) -> str:
    """Run ``ip ARGS``; raise :class:`NetnsError` with its stderr if it fails."""
    cmd = ["ip", *args]
    try:
        done = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, check=True, timeout=IP_TIMEOUT_S
        )
    except subprocess.CalledProcessError as e:
        raise NetnsError(
            f"`{' '.join(cmd)}` failed (exit {e.returncode}): {e.stderr.strip()}"
        ) from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"`{' '.join(cmd)}` did not finish in {IP_TIMEOUT_S:.0f} s") from None
    return done.stdout


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _namespaces() -> set[str]:
    return {line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()}


@functools.cache
def available() -> bool:
    """Linux, root, iproute2, and creating a namespace with a veth end inside it works."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"lsprobe{os.getpid() % 100_000}"
    veth, peer = f"lsp{os.getpid() % 100_000}a", f"lsp{os.getpid() % 100_000}b"
    try:
        _ip("netns", "add", probe)
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", probe)
        _ip("-n", probe, "link", "set", "lo", "up")
        return True
    except NetnsError:
        return False
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def _subnet_in_use(k: int, addresses: str, routes: str) -> bool:
    net = f"{SUBNET_PREFIX}.{k}."
    return net in addresses or net in routes


def _claim_subnet(n_nodes: int) -> Layout:
    """Pick a free ``k`` and create its bridge (which marks it taken), under the lock file."""
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        addresses = _ip("-4", "-o", "addr", "show")
        routes = _ip("-4", "route", "show", "table", "all")
        links, spaces = _links(), _namespaces()
        for k in SUBNETS:
            layout = Layout(k, n_nodes)
            if (
                layout.bridge in links
                or _subnet_in_use(k, addresses, routes)
                or any(v in links for v in layout.veths)
                or any(s.startswith(f"ls{k}n") for s in spaces)
            ):
                continue
            _ip("link", "add", layout.bridge, "type", "bridge")
            return layout
    raise NetnsError(f"no free /24 in {SUBNET_PREFIX}.{SUBNETS.start}-{SUBNETS.stop - 1}.0")


def setup(n_nodes: int) -> Layout:
    """Create the bridge, and one namespace joined to it per node; undo everything on failure."""
    if not 1 <= n_nodes <= MAX_NODES:
        raise ValueError(f"{n_nodes} nodes: namespaces are laid out for 1 to {MAX_NODES}")
    layout = _claim_subnet(n_nodes)
    try:
        _ip("addr", "add", f"{layout.host_ip}/24", "dev", layout.bridge)
        _ip("link", "set", layout.bridge, "up")
        for ns, veth, ip in zip(layout.namespaces, layout.veths, layout.ips, strict=True):
            inner = f"{veth}p"  # renamed eth0 once inside the namespace
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", inner)
            _ip("link", "set", veth, "master", layout.bridge)
            _ip("link", "set", veth, "up")
            _ip("link", "set", inner, "netns", ns)
            _ip(
                "-n",
                ns,
                "-batch",
                "-",
                stdin=f"link set {inner} name eth0\n"
                f"addr add {ip}/24 dev eth0\n"
                "link set eth0 up\n"
                "link set lo up\n",
            )
    except BaseException:
        teardown(layout)
        raise
    return layout


def teardown(layout: Layout) -> None:
    """Delete the veth pairs, the namespaces and the bridge; what is already gone is skipped,
    so this can run twice, or after a half-done :func:`setup`.

    The veths go first: deleting a host end deletes its pair at once, whereas deleting a
    namespace frees the interfaces inside it only later, in the kernel's cleanup work."""
    for veth in layout.veths:
        _delete(veth in _links(), "link", "del", veth)
    spaces = _namespaces()
    for ns in layout.namespaces:
        _delete(ns in spaces, "netns", "del", ns)
    _delete(layout.bridge in _links(), "link", "del", layout.bridge)


def _delete(present: bool, *args: str) -> None:
    """``ip ARGS`` for an object seen a moment ago; one that has vanished since is no error."""
    if not present:
        return
    try:
        _ip(*args)
    except NetnsError:
        name = args[-1]
        if name in _links() or name in _namespaces():
            raise


@contextmanager
def network(n_nodes: int) -> Iterator[Layout]:
    """:func:`setup` … :func:`teardown`, also on an exception or Ctrl-C."""
    layout = setup(n_nodes)
    try:
        yield layout
    finally:
        teardown(layout)


def partition(layout: Layout, groups: Sequence[set[int]], silent: bool = False) -> None:
    """Cut every link between nodes of different groups (replacing any earlier partition).

    ``groups`` must hold every node exactly once: ``[{0}, {1, 2, 3}]`` isolates node 0,
    ``[{0, 1}, {2, 3}]`` splits the network in halves. ``silent`` cuts as a failed switch
    would, instead of with blackhole routes (module docstring)."""
    flat = [i for g in groups for i in g]
    if sorted(flat) != list(range(layout.n_nodes)):
        raise ValueError(f"groups {groups} must hold each of the {layout.n_nodes} nodes once")
    group_of = {i: g for g in groups for i in g}
    via = f"via {layout.void_ip} dev eth0"
    # Fixed, so the kernel sends at once rather than queue segments while it asks for it by ARP.
    void = f"neigh replace {layout.void_ip} lladdr {layout.void_mac} nud permanent dev eth0"
    scripts = []
    for i in range(layout.n_nodes):
        cut = [ip for j, ip in enumerate(layout.ips) if j not in group_of[i]]
        scripts.append(
            _heal_script(layout)
            + ([void] if silent and cut else [])
            + [
                f"route add {ip}/32 {via}" if silent else f"route add blackhole {ip}/32"
                for ip in cut
            ]
        )
    _in_every_namespace(layout, scripts)


def cuts(layout: Layout) -> dict[int, list[str]]:
    """The addresses each node is cut from (what :func:`partition` added)."""
    out = {}
    for i, ns in enumerate(layout.namespaces):
        text = _ip("-n", ns, "route", "show", "type", "blackhole")
        text += _ip("-n", ns, "route", "show", "via", layout.void_ip)
        rows = [line.split() for line in text.splitlines() if line.strip()]
        out[i] = sorted(r[1] if r[0] == "blackhole" else r[0] for r in rows)
    return out


def heal(layout: Layout) -> None:
    """Remove every cut of the network: all links work again."""
    _in_every_namespace(layout, [_heal_script(layout)] * layout.n_nodes)


def _heal_script(layout: Layout) -> list[str]:
    return ["route flush type blackhole", f"route flush via {layout.void_ip}"]


def _in_every_namespace(layout: Layout, scripts: Sequence[list[str]]) -> None:
    """Run ``ip -batch`` script i in node i's namespace, all at once: a cut or a heal takes
    effect everywhere within milliseconds, not one namespace after another."""
    procs = [
        subprocess.Popen(
            ["ip", "-n", ns, "-batch", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for ns in layout.namespaces
    ]
    errors = []
    for ns, proc, script in zip(layout.namespaces, procs, scripts, strict=True):
        try:
            _, err = proc.communicate("".join(f"{line}\n" for line in script), IP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            errors.append(f"`ip -n {ns} -batch` ({'; '.join(script)}): {err.strip()}")
    if errors:
        raise NetnsError("; ".join(errors))
