"""node/config.py: config.toml renders with comments, reads back equal, and names bad keys."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lockstep.consensus import limits
from lockstep.node.config import (
    ConfigError,
    HostPort,
    NodeConfig,
    PeerAddress,
    load_config,
    parse_config,
    render_config,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))


def test_defaults_work_on_localhost() -> None:
    cfg = NodeConfig()
    assert str(cfg.p2p.listen_address) == "127.0.0.1:26656"
    assert str(cfg.rpc.listen_address) == "127.0.0.1:26657"
    assert str(cfg.metrics.listen_address) == "127.0.0.1:26658"
    assert cfg.p2p.peers == ()
    assert cfg.consensus.block_build_max_txs == limits.MAX_BLOCK_TXS
    assert parse_config("") == cfg


def test_rendered_file_is_commented_and_round_trips() -> None:
    cfg = NodeConfig()
    cfg = replace(
        cfg,
        node=replace(cfg.node, moniker='alice "the" validator'),
        p2p=replace(
            cfg.p2p,
            peers=(
                PeerAddress(KEY_A, HostPort("10.0.0.2", 26656)),
                PeerAddress(KEY_B, HostPort("::1", 26666)),
            ),
            observers=(KEY_B,),
        ),
        log=replace(cfg.log, format="json", file="logs/node.log", level="debug"),
    )
    text = render_config(cfg)
    assert parse_config(text) == cfg
    doc = tomllib.loads(text)
    # Every key of every section carries a comment line just above it.
    lines = text.splitlines()
    for section, table in doc.items():
        for key in table:
            i = next(n for n, line in enumerate(lines) if line.startswith(f"{key} = "))
            assert lines[i - 1].startswith("#"), f"{section}.{key} has no comment"
    assert f"{KEY_B.hex()}@[::1]:26666" in text


def test_load_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(render_config(NodeConfig()))
    cfg = load_config(path)
    assert cfg == NodeConfig()
    assert cfg.home_dir(path) == tmp_path.parent
    assert cfg.resolve(path, "config/genesis.toml") == tmp_path.parent / "config/genesis.toml"
    assert cfg.resolve(path, "/abs/x") == Path("/abs/x")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


def test_error_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[rpc]\nmax_body_bytes = "big"\n')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.key == "rpc.max_body_bytes"
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[consensus]\nview_timeout_ms = 500", "consensus.view_timeout_ms", "genesis [timing]"),
        ("[consensus]\nblock_interval_ms = 5", "consensus.block_interval_ms", "genesis [timing]"),
        ("[consensus]\nblock_build_max_txs = 9000", "consensus.block_build_max_txs", "1..8192"),
        ("[consensus]\nmempool_max_txs = 0", "consensus.mempool_max_txs", "must be in"),
        ("[consensus]\nmempool_max_bytes = 1", "consensus.mempool_max_bytes", "full block"),
        ("[node]\nmonikr = 'x'", "node.monikr", "unknown key"),
        ("[node]\nmoniker = ''", "node.moniker", "1..64"),
        ("[node]\nmoniker = 7", "node.moniker", "expected str, got int"),
        ("[mempool]\nsize = 1", "mempool", "unknown section"),
        ("node = 3", "node", "expected a table"),
        ("[p2p]\nlisten_address = 'localhost'", "p2p.listen_address", "expected host:port"),
        ("[p2p]\nlisten_address = 'h:70000'", "p2p.listen_address", "outside 1..65535"),
        ("[p2p]\nlisten_address = '::1:5'", "p2p.listen_address", "in brackets"),
        ("[p2p]\nlisten_address = 5", "p2p.listen_address", "expected a string"),
        ("[p2p]\npeers = 'x'", "p2p.peers", "expected a list"),
        ("[p2p]\npeers = ['1.2.3.4:5']", "p2p.peers[0]", "<public key hex>@host:port"),
        ("[p2p]\npeers = ['abcd@1.2.3.4:5']", "p2p.peers[0]", "must be 32 bytes"),
        (f"[p2p]\npeers = ['{KEY_A.hex()}@a:1', '{KEY_A.hex()}@b:2']", "p2p.peers[1]", "twice"),
        ("[p2p]\nobservers = ['zz']", "p2p.observers[0]", "64 hex"),
        ("[rpc]\nmax_body_bytes = true", "rpc.max_body_bytes", "expected int, got bool"),
        ("[rpc]\nmax_body_bytes = 100", "rpc.max_body_bytes", "too small"),
        ("[rpc]\nclient_requests_per_s = 0", "rpc.client_requests_per_s", "at least 1"),
        ("[rpc]\nlisten_address = '127.0.0.1:26656'", "rpc.listen_address", "already used"),
        ("[metrics]\nenabled = 'yes'", "metrics.enabled", "expected bool"),
        ("[log]\nlevel = 'loud'", "log.level", "not one of"),
        ("[log]\nformat = 'xml'", "log.format", "not one of"),
        ("[log", "", "not valid TOML"),
    ],
)
def test_bad_values_name_the_key(text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert e.value.key == key
    assert reason in str(e.value)


def test_disabled_metrics_may_share_a_port() -> None:
    cfg = parse_config("[metrics]\nenabled = false\nlisten_address = '127.0.0.1:26656'")
    assert cfg.metrics.enabled is False


def test_with_ports() -> None:
    cfg = NodeConfig().with_ports("0.0.0.0", 1000, 1001, 1002)
    assert (str(cfg.p2p.listen_address), str(cfg.rpc.listen_address)) == (
        "0.0.0.0:1000",
        "0.0.0.0:1001",
    )
    assert parse_config(render_config(cfg)) == cfg


printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=64)
hosts = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}", fullmatch=True),
)
ports = st.integers(1, 65_535)
keys = st.binary(min_size=32, max_size=32)


@st.composite
def configs(draw: st.DrawFn) -> NodeConfig:
    p2p_port, rpc_port, metrics_port = draw(st.lists(ports, min_size=3, max_size=3, unique=True))
    cfg = NodeConfig().with_ports(draw(hosts), p2p_port, rpc_port, metrics_port)
    peer_keys = draw(st.lists(keys, max_size=5, unique=True))
    peers = tuple(PeerAddress(k, HostPort(draw(hosts), draw(ports))) for k in peer_keys)
    return replace(
        cfg,
        node=replace(cfg.node, moniker=draw(printable), data_dir=draw(printable)),
        p2p=replace(cfg.p2p, peers=peers, observers=tuple(draw(st.lists(keys, unique=True)))),
        rpc=replace(cfg.rpc, client_burst=draw(st.integers(1, 2**40))),
        metrics=replace(cfg.metrics, enabled=draw(st.booleans())),
        log=replace(cfg.log, file=draw(st.text(max_size=40))),
    )


@given(configs())
def test_any_config_round_trips(cfg: NodeConfig) -> None:
    assert parse_config(render_config(cfg)) == cfg
