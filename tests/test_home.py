"""node/home.py and testnet/generate.py: home directories, keys never overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from lockstep.consensus.genesis import load_genesis
from lockstep.node.config import ConfigError, NodeConfig, load_config
from lockstep.node.genesis_file import genesis_to_toml
from lockstep.node.home import HomeError, HomeLayout, init_home
from lockstep.node.keys import KeyFileError, ValidatorKeys, load_validator_keys
from lockstep.testnet.generate import generate_network

from tests.conftest import make_genesis


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def genesis_file(tmp_path: Path) -> Path:
    path = tmp_path / "genesis.toml"
    path.write_text(genesis_to_toml(make_genesis()[0]))
    return path


def test_init_creates_layout(tmp_path: Path, genesis_file: Path) -> None:
    home = tmp_path / "home"
    result = init_home(home, genesis_file, "alice")
    layout = HomeLayout(home)
    assert result.created_key and result.created_config and result.copied_genesis
    assert layout.data_dir.is_dir() and mode(layout.data_dir) == 0o700
    assert mode(layout.validator_key_file) == 0o600
    assert load_validator_keys(layout.validator_key_file).public_key == result.validator_public_key
    assert layout.genesis_file.read_bytes() == genesis_file.read_bytes()
    cfg = load_config(layout.config_file)
    assert cfg.node.moniker == "alice"
    assert cfg.resolve(layout.config_file, cfg.node.genesis_file) == layout.genesis_file.resolve()
    assert "# " in layout.config_file.read_text()


def test_init_twice_keeps_everything(tmp_path: Path, genesis_file: Path) -> None:
    home = tmp_path / "home"
    first = init_home(home, genesis_file, "alice")
    before = {p: p.read_bytes() for p in (home / "config").iterdir()}
    second = init_home(home, genesis_file, "bob")
    assert second.validator_public_key == first.validator_public_key
    assert not (second.created_key or second.created_config or second.copied_genesis)
    assert {p: p.read_bytes() for p in (home / "config").iterdir()} == before


def test_never_overwrites_a_different_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = init_home(home, None, "alice")
    key_bytes = HomeLayout(home).validator_key_file.read_bytes()
    with pytest.raises(HomeError, match="refusing to overwrite a validator key"):
        init_home(home, None, "alice", keys=ValidatorKeys.generate())
    assert HomeLayout(home).validator_key_file.read_bytes() == key_bytes
    assert init_home(home, None, "a").validator_public_key == first.validator_public_key


def test_refuses_a_different_genesis(tmp_path: Path, genesis_file: Path) -> None:
    home = tmp_path / "home"
    init_home(home, genesis_file, "alice")
    other = tmp_path / "other.toml"
    other.write_text(genesis_to_toml(make_genesis(n_validators=3)[0]))
    with pytest.raises(HomeError, match="refusing to replace"):
        init_home(home, other, "alice")
    assert HomeLayout(home).genesis_file.read_bytes() == genesis_file.read_bytes()


def test_invalid_genesis_refused_before_anything_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("chain_name = 3\n")
    with pytest.raises(ValueError):
        init_home(tmp_path / "home", bad, "alice")
    assert not (tmp_path / "home").exists()


def test_world_readable_existing_key_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, None, "alice")
    HomeLayout(home).validator_key_file.chmod(0o644)
    with pytest.raises(KeyFileError, match="too open"):
        init_home(home, None, "alice")


def test_custom_config(tmp_path: Path) -> None:
    cfg = NodeConfig().with_ports("127.0.0.1", 4000, 4001, 4002)
    init_home(tmp_path / "h", None, "carol", config=cfg)
    loaded = load_config(HomeLayout(tmp_path / "h").config_file)
    assert loaded.rpc.listen_address.port == 4001
    assert loaded.node.moniker == "carol"


def test_testnet_generate_writes_configs(tmp_path: Path) -> None:
    net = generate_network(tmp_path / "net", n_validators=3, n_traders=1, base_port=30000)
    text = (tmp_path / "net" / "genesis.toml").read_text()
    assert load_genesis(text) == net.genesis
    for i, home in enumerate(net.node_homes):
        layout = HomeLayout(home)
        cfg = load_config(layout.config_file)
        assert cfg.node.moniker == f"node{i}"
        assert str(cfg.p2p.listen_address) == f"127.0.0.1:{30000 + 10 * i}"
        assert str(cfg.rpc.listen_address) == f"127.0.0.1:{30001 + 10 * i}"
        assert str(cfg.metrics.listen_address) == f"127.0.0.1:{30002 + 10 * i}"
        others = [v for j, v in enumerate(net.genesis.validators) if j != i]
        assert [str(p) for p in cfg.p2p.peers] == [
            f"{v.public_key.hex()}@{v.address}" for v in others
        ]
        keys = load_validator_keys(layout.validator_key_file)
        assert keys.public_key == net.genesis.validators[i].public_key
        assert layout.genesis_file.read_text() == text
    with pytest.raises(HomeError, match="refusing to overwrite"):
        generate_network(tmp_path / "net", n_validators=3, n_traders=1)


def test_testnet_generate_multi_host(tmp_path: Path) -> None:
    net = generate_network(tmp_path / "net", 2, 0, hosts=["10.0.0.1", "10.0.0.2"])
    cfg = load_config(HomeLayout(net.node_homes[0]).config_file)
    assert str(cfg.p2p.listen_address) == "0.0.0.0:26656"
    assert [str(p.address) for p in cfg.p2p.peers] == ["10.0.0.2:26656"]


def test_invalid_existing_config_refused_before_key_is_made(tmp_path: Path) -> None:
    layout = HomeLayout(tmp_path / "h")
    layout.config_dir.mkdir(parents=True)
    layout.config_file.write_text("[rpc]\nmax_body_bytes = 'lots'\n")
    with pytest.raises(ConfigError, match=r"rpc\.max_body_bytes"):
        init_home(layout.home, None, "x")
    assert not layout.validator_key_file.exists()
