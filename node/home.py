"""A node's home directory: create it (``lockstep node init``) and name its files.

Layout (CometBFT conventions)::

    <home>/config/config.toml         how this node runs (node/config.py), commented
    <home>/config/genesis.toml        the chain (consensus/genesis.py), identical on every node
    <home>/config/validator_key.json  Ed25519 + VRF seeds, mode 0600 (node/keys.py)
    <home>/data/                      block store, safety state, ledger (mode 0700)

Why initialisation refuses rather than overwrites: a validator key that is replaced while the
node is in the validator set loses the validator's identity, and one that is replaced by a copy
of another node's key makes two machines sign as one validator, which is how validators
equivocate. So :func:`init_home` keeps an existing key (and says so) and refuses outright to
install a *different* key over it; likewise it refuses to replace a genesis with a different
chain. Running it twice on the same home is harmless.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from lockstep.consensus.genesis import Genesis
from lockstep.node.config import NodeConfig, load_config, render_config
from lockstep.node.genesis_file import read_genesis_file
from lockstep.node.keys import ValidatorKeys, load_validator_keys, save_validator_keys

CONFIG_DIR = "config"
DATA_DIR = "data"
CONFIG_FILE = "config.toml"
GENESIS_FILE = "genesis.toml"
VALIDATOR_KEY_FILE = "validator_key.json"
DATA_DIR_MODE = 0o700
"""The ledger and safety state are nobody else's business, and nobody else's to edit."""


class HomeError(Exception):
    """The home directory cannot be initialised as asked (names the file and why)."""


@dataclass(frozen=True, slots=True)
class HomeLayout:
    """Default paths inside a home directory."""

    home: Path

    @property
    def config_dir(self) -> Path:
        return self.home / CONFIG_DIR

    @property
    def data_dir(self) -> Path:
        return self.home / DATA_DIR

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_FILE

    @property
    def genesis_file(self) -> Path:
        return self.config_dir / GENESIS_FILE

    @property
    def validator_key_file(self) -> Path:
        return self.config_dir / VALIDATOR_KEY_FILE


@dataclass(frozen=True, slots=True)
class InitResult:
    """What :func:`init_home` found and did, for the caller to report."""

    layout: HomeLayout
    validator_public_key: bytes
    created_key: bool
    created_config: bool
    copied_genesis: bool
    genesis: Genesis | None


def init_home(
    home: Path,
    genesis_path: Path | None,
    moniker: str,
    *,
    config: NodeConfig | None = None,
    keys: ValidatorKeys | None = None,
) -> InitResult:
    """Create ``home``'s directories, validator key, genesis copy and ``config.toml``.

    * ``keys``: the validator key to install; None generates one. An existing key file is kept
      as is; if ``keys`` is given and differs from it, :class:`HomeError` (never overwrite).
    * ``genesis_path``: copied byte for byte after it parses and validates; an existing,
      different genesis in the home is refused.
    * ``config``: written with ``moniker`` filled in; defaults otherwise. An existing
      ``config.toml`` is kept (operators edit it), after checking it still loads.
    """
    layout = HomeLayout(home)
    genesis = read_genesis_file(genesis_path) if genesis_path is not None else None
    _check_genesis_target(layout, genesis_path)
    existing = _existing_key(layout, keys)
    created_config = not layout.config_file.exists()
    if not created_config:
        load_config(layout.config_file)  # an existing file must still be valid; kept as is

    layout.config_dir.mkdir(parents=True, exist_ok=True)
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.data_dir, DATA_DIR_MODE)

    created_key = existing is None
    if existing is None:
        existing = keys if keys is not None else ValidatorKeys.generate()
        save_validator_keys(layout.validator_key_file, existing)
        assert load_validator_keys(layout.validator_key_file).public_key == existing.public_key

    copied_genesis = False
    if genesis_path is not None and not layout.genesis_file.exists():
        shutil.copyfile(genesis_path, layout.genesis_file)
        copied_genesis = True

    if created_config:
        cfg = config if config is not None else NodeConfig()
        cfg = replace(cfg, node=replace(cfg.node, moniker=moniker))
        _write_text_atomic(layout.config_file, render_config(cfg))

    return InitResult(
        layout, existing.public_key, created_key, created_config, copied_genesis, genesis
    )


def _check_genesis_target(layout: HomeLayout, genesis_path: Path | None) -> None:
    target = layout.genesis_file
    if genesis_path is None or not target.exists():
        return
    if target.resolve() == genesis_path.resolve():
        return
    if target.read_bytes() != genesis_path.read_bytes():
        raise HomeError(
            f"{target} already exists and differs from {genesis_path}; refusing to replace a "
            f"chain's genesis (remove it first if you really mean to join another chain)"
        )


def _existing_key(layout: HomeLayout, keys: ValidatorKeys | None) -> ValidatorKeys | None:
    path = layout.validator_key_file
    if not path.exists():
        return None
    current = load_validator_keys(path)  # also refuses a key file others can read
    if keys is not None and (
        keys.public_key != current.public_key or keys.vrf_seed != current.vrf_seed
    ):
        raise HomeError(
            f"{path} already holds validator key {current.public_key.hex()}; refusing to "
            f"overwrite a validator key (two machines signing as one validator equivocate)"
        )
    return current


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
