"""The node's local configuration: ``<home>/config/config.toml``.

Why a separate file from genesis: genesis says what the *chain* is and every node must hold the
same one; ``config.toml`` says how *this node* runs (where it listens, whom it dials, how much it
logs) and may differ on every machine. Following CometBFT, the file is written once from a
commented template (:func:`render_config`) so an operator can read what each key does, and
loaded strictly (:func:`load_config`): an unknown key, a wrong type or an impossible value is a
:class:`ConfigError` naming the key, because a typo silently ignored is a node silently
misconfigured.

What is deliberately *not* here: anything consensus-critical. View timeouts, block interval,
epoch length and clock drift come from genesis ``[timing]``; a node that ran on its own timing
would time out views its peers still wait for. Such keys in ``[consensus]`` are refused with an
error saying so. Only local resource knobs (mempool size, how many transactions this node packs
into a block it proposes, up to the protocol limit) are configurable.

Missing keys take their defaults, so a file written by an older release keeps loading when a new
key is added. The defaults run a single node on 127.0.0.1 out of the box.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w
from lockstep.consensus import limits

DEFAULT_P2P_PORT = 26_656
DEFAULT_RPC_PORT = 26_657
DEFAULT_METRICS_PORT = 26_658
"""p2p, RPC and metrics on consecutive ports, as ``lockstep testnet generate`` lays them out."""

DEFAULT_RPC_MAX_BODY_BYTES = 64 * 1024
"""A signed transaction is at most MAX_TX_BYTES (8 KiB); as JSON hex it doubles. 64 KiB leaves
room without letting one request pin much memory."""

MIN_RPC_MAX_BODY_BYTES = 2 * limits.MAX_TX_BYTES + 1024
"""Below this a valid transaction sent as JSON hex would not fit."""

DEFAULT_RPC_CLIENT_REQUESTS_PER_S = 100
DEFAULT_RPC_CLIENT_BURST = 200
"""Token bucket per client address: a market maker re-quoting several times a second fits; a
loop hammering the node does not."""

DEFAULT_MEMPOOL_MAX_TXS = 50_000
DEFAULT_MEMPOOL_MAX_BYTES = 64 * 1024 * 1024
"""About six full blocks of transactions (tens of seconds of backlog at full load) in at most
64 MiB of wire bytes. The count binds first: a held transaction is also kept decoded, about a
kilobyte of memory each, so 50,000 of them are about 50 MB of the node's memory."""

MAX_MEMPOOL_TXS = 10_000_000
"""Upper bound on ``mempool_max_txs`` so a typo (an extra zero or three) cannot exhaust memory."""

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")

CONSENSUS_TIMING_KEYS = frozenset(
    {
        "view_timeout_ms",
        "view_timeout_max_ms",
        "block_interval_ms",
        "epoch_views",
        "max_clock_drift_ms",
        "timeout_propose",
        "timeout_commit",
    }
)
"""Keys an operator might expect under [consensus] but that belong to genesis [timing]."""


class ConfigError(ValueError):
    """``config.toml`` is unreadable or a key holds a bad value. ``key`` names it
    (``p2p.peers[2]``); empty for whole-file problems."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


# --------------------------------------------------------------------------- value types


def _split_host_port(text: Any, key: str) -> tuple[str, int]:
    """``host:port`` (IPv6 hosts in brackets) -> (host, port), or :class:`ConfigError`."""
    if not isinstance(text, str):
        raise ConfigError(key, f"expected a string host:port, got {type(text).__name__}")
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not port_text.isascii():
        raise ConfigError(key, f"expected host:port, got {text!r}")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigError(key, f"unbalanced brackets in {text!r}")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(key, f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ConfigError(key, f"write an IPv6 host in brackets, e.g. [::1]:26656: {text!r}")
    if any(c.isspace() or c in "/@[]" for c in host) or not host.isprintable():
        raise ConfigError(key, f"{host!r} is not a host name")
    port = int(port_text)
    if not 1 <= port <= 65_535:
        raise ConfigError(key, f"port {port} outside 1..65535")
    return host, port


@dataclass(frozen=True, slots=True)
class HostPort:
    """A TCP endpoint ``host:port``; an IPv6 host is written in brackets (``[::1]:26656``)."""

    host: str
    port: int

    def __post_init__(self) -> None:
        # Built by code, not parsed: the same rules, so render_config never writes a bad file.
        if type(self.host) is not str or type(self.port) is not int:
            raise ConfigError("address", f"host must be a str and port an int: {self!r}")
        if _split_host_port(str(self), "address") != (
            self.host,
            self.port,
        ):
            raise ConfigError("address", f"host {self.host!r} port {self.port!r} is not valid")

    @classmethod
    def parse(cls, text: str, key: str) -> HostPort:
        return cls(*_split_host_port(text, key))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """A peer to dial: its Ed25519 identity and where it listens (``<hex key>@host:port``).

    The key is what the session handshake authenticates, so a wrong address fails loudly
    instead of connecting to whoever answers there.
    """

    public_key: bytes
    address: HostPort

    def __post_init__(self) -> None:
        if type(self.public_key) is not bytes or len(self.public_key) != 32:
            raise ConfigError("peer", "public key must be 32 bytes")

    @classmethod
    def parse(cls, text: str, key: str) -> PeerAddress:
        if not isinstance(text, str):
            raise ConfigError(key, f"expected a string, got {type(text).__name__}")
        key_hex, sep, addr = text.partition("@")
        if not sep:
            raise ConfigError(key, f"expected <public key hex>@host:port, got {text!r}")
        return cls(_parse_public_key(key_hex, key), HostPort.parse(addr, key))

    def __str__(self) -> str:
        return f"{self.public_key.hex()}@{self.address}"


def _parse_public_key(text: Any, key: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except (TypeError, ValueError):
        raise ConfigError(key, f"public key must be 64 hex characters, got {text!r}") from None
    if len(raw) != 32:
        raise ConfigError(key, f"public key must be 32 bytes (64 hex characters), got {len(raw)}")
    return raw


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class NodeSection:
    moniker: str = "node"
    home: str = ""
    """Empty: the directory that holds ``config/`` (so a home directory can be moved)."""
    genesis_file: str = "config/genesis.toml"
    validator_key_file: str = "config/validator_key.json"
    data_dir: str = "data"


@dataclass(frozen=True, slots=True)
class P2PSection:
    listen_address: HostPort = HostPort("127.0.0.1", DEFAULT_P2P_PORT)
    peers: tuple[PeerAddress, ...] = ()
    observers: tuple[bytes, ...] = ()
    """Public keys of non-validator nodes allowed to connect (read-only followers)."""


@dataclass(frozen=True, slots=True)
class RPCSection:
    listen_address: HostPort = HostPort("127.0.0.1", DEFAULT_RPC_PORT)
    max_body_bytes: int = DEFAULT_RPC_MAX_BODY_BYTES
    client_requests_per_s: int = DEFAULT_RPC_CLIENT_REQUESTS_PER_S
    client_burst: int = DEFAULT_RPC_CLIENT_BURST


@dataclass(frozen=True, slots=True)
class MetricsSection:
    enabled: bool = True
    listen_address: HostPort = HostPort("127.0.0.1", DEFAULT_METRICS_PORT)


@dataclass(frozen=True, slots=True)
class ConsensusSection:
    mempool_max_txs: int = DEFAULT_MEMPOOL_MAX_TXS
    mempool_max_bytes: int = DEFAULT_MEMPOOL_MAX_BYTES
    block_build_max_txs: int = limits.MAX_BLOCK_TXS


@dataclass(frozen=True, slots=True)
class LogSection:
    level: str = "info"
    format: str = "console"
    file: str = ""
    """Empty: standard error. Relative paths are under the home directory."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node: NodeSection = field(default_factory=NodeSection)
    p2p: P2PSection = field(default_factory=P2PSection)
    rpc: RPCSection = field(default_factory=RPCSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    log: LogSection = field(default_factory=LogSection)

    def __post_init__(self) -> None:
        check_config(self)

    def home_dir(self, config_path: Path) -> Path:
        """The home directory: ``node.home`` if set, else the parent of ``config/``."""
        if self.node.home:
            return Path(self.node.home).expanduser()
        return config_path.resolve().parent.parent

    def resolve(self, config_path: Path, relative: str) -> Path:
        """A path from this file (``genesis_file``, ``log.file``), relative to the home."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.home_dir(config_path) / p

    def with_ports(self, host: str, p2p_port: int, rpc_port: int, metrics_port: int) -> NodeConfig:
        """A copy listening on ``host`` with the given ports (for testnets)."""
        return replace(
            self,
            p2p=replace(self.p2p, listen_address=HostPort(host, p2p_port)),
            rpc=replace(self.rpc, listen_address=HostPort(host, rpc_port)),
            metrics=replace(self.metrics, listen_address=HostPort(host, metrics_port)),
        )


def check_config(cfg: NodeConfig) -> None:
    """Value rules beyond types. Raises :class:`ConfigError` naming the key."""
    n = cfg.node
    if not n.moniker or len(n.moniker) > limits.MAX_NAME_CHARS:
        raise ConfigError("node.moniker", f"must be 1..{limits.MAX_NAME_CHARS} characters")
    if not (n.moniker.isascii() and n.moniker.isprintable()):
        raise ConfigError("node.moniker", "must be printable ASCII")
    for name in ("genesis_file", "validator_key_file", "data_dir"):
        if not getattr(n, name):
            raise ConfigError(f"node.{name}", "must not be empty")
    keys = [p.public_key for p in cfg.p2p.peers]
    for i, k in enumerate(keys):
        if k in keys[:i]:
            raise ConfigError(f"p2p.peers[{i}]", f"peer {k.hex()[:16]}… is listed twice")
    for i, k in enumerate(cfg.p2p.observers):
        if k in cfg.p2p.observers[:i]:
            raise ConfigError(f"p2p.observers[{i}]", f"observer {k.hex()[:16]}… is listed twice")
    r = cfg.rpc
    if r.max_body_bytes < MIN_RPC_MAX_BODY_BYTES:
        raise ConfigError(
            "rpc.max_body_bytes",
            f"{r.max_body_bytes} is too small to carry one transaction as JSON hex "
            f"(need at least {MIN_RPC_MAX_BODY_BYTES})",
        )
    if r.client_requests_per_s < 1:
        raise ConfigError("rpc.client_requests_per_s", "must be at least 1")
    if r.client_burst < 1:
        raise ConfigError("rpc.client_burst", "must be at least 1")
    listeners = {
        "p2p.listen_address": cfg.p2p.listen_address,
        "rpc.listen_address": cfg.rpc.listen_address,
    }
    if cfg.metrics.enabled:
        listeners["metrics.listen_address"] = cfg.metrics.listen_address
    seen: dict[int, str] = {}
    for key, hp in listeners.items():
        if hp.port in seen:
            raise ConfigError(key, f"port {hp.port} is already used by {seen[hp.port]}")
        seen[hp.port] = key
    c = cfg.consensus
    if not 1 <= c.mempool_max_txs <= MAX_MEMPOOL_TXS:
        raise ConfigError("consensus.mempool_max_txs", f"must be in 1..{MAX_MEMPOOL_TXS}")
    if c.mempool_max_bytes < limits.MAX_BLOCK_BYTES:
        raise ConfigError(
            "consensus.mempool_max_bytes",
            f"must hold at least one full block ({limits.MAX_BLOCK_BYTES} bytes)",
        )
    if not 1 <= c.block_build_max_txs <= limits.MAX_BLOCK_TXS:
        raise ConfigError(
            "consensus.block_build_max_txs",
            f"must be in 1..{limits.MAX_BLOCK_TXS} (the protocol's MAX_BLOCK_TXS)",
        )
    if cfg.log.level not in LOG_LEVELS:
        raise ConfigError("log.level", f"{cfg.log.level!r} is not one of {', '.join(LOG_LEVELS)}")
    if cfg.log.format not in LOG_FORMATS:
        raise ConfigError(
            "log.format", f"{cfg.log.format!r} is not one of {', '.join(LOG_FORMATS)}"
        )


# --------------------------------------------------------------------------- loading


def _typed(value: Any, expected: type, key: str) -> Any:
    # bool is a subclass of int in Python; in a config file they are different things.
    if type(value) is not expected:
        raise ConfigError(key, f"expected {expected.__name__}, got {type(value).__name__}")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list of strings, got {type(value).__name__}")
    return value


def _section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(name, "expected a table")
    return table


def _build(cls: type, table: dict[str, Any], section: str, convert: dict[str, Any]) -> Any:
    names = [f.name for f in fields(cls)]
    for k in table:
        if k not in names:
            raise ConfigError(f"{section}.{k}", f"unknown key (known: {', '.join(names)})")
    defaults = cls()
    kwargs = {}
    for f in fields(cls):
        key = f"{section}.{f.name}"
        if f.name not in table:
            kwargs[f.name] = getattr(defaults, f.name)
            continue
        conv = convert.get(f.name)
        if conv is not None:
            kwargs[f.name] = conv(table[f.name], key)
        else:
            kwargs[f.name] = _typed(table[f.name], type(getattr(defaults, f.name)), key)
    return cls(**kwargs)


def config_from_dict(doc: dict[str, Any]) -> NodeConfig:
    """Build and validate a :class:`NodeConfig` from a parsed TOML document."""
    sections = [f.name for f in fields(NodeConfig)]
    for name in doc:
        if name not in sections:
            raise ConfigError(name, f"unknown section (known: {', '.join(sections)})")
    consensus = _section(doc, "consensus")
    for k in consensus:
        if k in CONSENSUS_TIMING_KEYS:
            raise ConfigError(
                f"consensus.{k}",
                "consensus timing is set by the genesis [timing] table and every validator "
                "must use the same value; it cannot be overridden in config.toml",
            )

    def peers(value: Any, key: str) -> tuple[PeerAddress, ...]:
        return tuple(
            PeerAddress.parse(p, f"{key}[{i}]") for i, p in enumerate(_str_list(value, key))
        )

    def observers(value: Any, key: str) -> tuple[bytes, ...]:
        return tuple(
            _parse_public_key(o, f"{key}[{i}]") for i, o in enumerate(_str_list(value, key))
        )

    addr = {"listen_address": HostPort.parse}
    return NodeConfig(
        node=_build(NodeSection, _section(doc, "node"), "node", {}),
        p2p=_build(
            P2PSection,
            _section(doc, "p2p"),
            "p2p",
            {**addr, "peers": peers, "observers": observers},
        ),
        rpc=_build(RPCSection, _section(doc, "rpc"), "rpc", addr),
        metrics=_build(MetricsSection, _section(doc, "metrics"), "metrics", addr),
        consensus=_build(ConsensusSection, consensus, "consensus", {}),
        log=_build(LogSection, _section(doc, "log"), "log", {}),
    )


def parse_config(text: str) -> NodeConfig:
    """Parse and validate the text of a ``config.toml``."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"not valid TOML: {e}") from None
    return config_from_dict(doc)


def load_config(path: Path) -> NodeConfig:
    """Read and validate ``config.toml``; errors name the file and the key."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError("", f"{path}: cannot read config: {e.strerror or e}") from None
    try:
        return parse_config(text)
    except ConfigError as e:
        raise ConfigError(e.key, f"{e.reason} (in {path})") from None


# --------------------------------------------------------------------------- rendering


def _toml(value: Any) -> str:
    """One TOML value, rendered by tomli-w so quoting and escaping are always right."""
    line = tomli_w.dumps({"v": value})
    assert line.startswith("v = ")
    return line[4:].rstrip("\n")


_TEMPLATE = """\
# Lockstep node configuration.
#
# This file is how THIS node runs: where it listens, whom it dials, how it logs. What the chain
# IS (validators, markets, consensus timing) lives in genesis.toml and must be identical on every
# node; it cannot be overridden here. Relative paths are relative to the home directory (the
# directory that holds config/ and data/). Every key is optional; a missing key takes the default
# shown in docs/operators.md. Unknown keys are an error, so a typo never goes unnoticed.

[node]
# A human name for this node, shown in logs and in /v1/status. Printable ASCII, at most 64.
moniker = {node_moniker}
# The home directory. Empty: the directory that holds config/ (so the home can be moved).
home = {node_home}
# The chain's genesis file. Its hash is the chain id every signature binds to.
genesis_file = {node_genesis_file}
# Validator signing and VRF keys (JSON, mode 0600; the node refuses a file others can read).
validator_key_file = {node_validator_key_file}
# Block store, consensus safety state and the SQLite ledger.
data_dir = {node_data_dir}

[p2p]
# Address for incoming peer connections (host:port; 0.0.0.0 to accept from other machines).
listen_address = {p2p_listen_address}
# Peers to dial, as "<ed25519 public key hex>@host:port". The key is checked in the encrypted
# handshake, so a peer at a wrong address is refused rather than trusted. Only validators in
# genesis and the observers below are admitted.
peers = {p2p_peers}
# Public keys (hex) of non-validator nodes allowed to connect and follow the chain.
observers = {p2p_observers}

[rpc]
# HTTP API for wallets and tools (see docs/rpc.md). Keep it on 127.0.0.1 unless a proxy with
# TLS sits in front of it.
listen_address = {rpc_listen_address}
# Largest request body accepted, in bytes. A transaction is at most 8 KiB of CBOR (16 KiB as
# JSON hex).
max_body_bytes = {rpc_max_body_bytes}
# Sustained requests per second allowed per client address (token bucket refill rate).
client_requests_per_s = {rpc_client_requests_per_s}
# Requests a client may send at once before the rate applies (token bucket size).
client_burst = {rpc_client_burst}

[metrics]
# Serve Prometheus metrics over HTTP at /metrics.
enabled = {metrics_enabled}
# Address of the metrics listener.
listen_address = {metrics_listen_address}

[consensus]
# Local resource limits only. Consensus timing (view timeouts, block interval, epoch length,
# clock drift) comes from genesis [timing]; setting it here is an error.
#
# Most transactions the mempool holds; beyond it new transactions are refused with a clear
# reason (503 on the RPC) until blocks drain it.
mempool_max_txs = {consensus_mempool_max_txs}
# Most bytes of encoded transactions the mempool holds (at least one full block, 2 MiB).
mempool_max_bytes = {consensus_mempool_max_bytes}
# Most transactions this node packs into a block it proposes (at most the protocol's 8192).
block_build_max_txs = {consensus_block_build_max_txs}

[log]
# One of: debug, info, warning, error.
level = {log_level}
# "json": one JSON object per line (for files and log shippers); "console": readable colours.
format = {log_format}
# Log file. Empty: standard error.
file = {log_file}
"""


def _render_value(value: Any) -> str:
    if isinstance(value, HostPort | PeerAddress):
        return _toml(str(value))
    if isinstance(value, tuple):
        items = [str(v) if isinstance(v, PeerAddress) else v.hex() for v in value]
        if not items:
            return "[]"
        return "[\n" + "".join(f"    {_toml(i)},\n" for i in items) + "]"
    return _toml(value)


def render_config(cfg: NodeConfig) -> str:
    """The commented ``config.toml`` for ``cfg``; ``parse_config`` reads it back equal."""
    values = {}
    for section in fields(NodeConfig):
        sec = getattr(cfg, section.name)
        for f in fields(sec):
            values[f"{section.name}_{f.name}"] = _render_value(getattr(sec, f.name))
    text = _TEMPLATE.format(**values)
    assert parse_config(text) == cfg, "render_config must round-trip"
    return text
