"""Write the files of a network: genesis, validator keys, configs, funded trader wallets.

``lockstep testnet generate`` lays out one home directory per validator (CometBFT style:
``<dir>/node<i>/config/{genesis.toml,validator_key.json}`` and ``data/``), plus
``<dir>/wallets/trader<j>.json`` funded in the genesis. With ``--hosts h1,h2,…`` validator i
advertises ``h_i`` as its p2p host so the same files run across several machines; without it,
everything is on 127.0.0.1 with consecutive ports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lockstep.consensus.crypto import SEED_BYTES, Signer
from lockstep.consensus.genesis import (
    QUOTE_DECIMALS,
    Account,
    Genesis,
    Validator,
    default_markets,
    default_timing,
)
from lockstep.node.genesis_file import genesis_to_toml
from lockstep.node.keys import ValidatorKeys, save_validator_keys, save_wallet

DEFAULT_P2P_PORT = 26_656
DEFAULT_RPC_PORT = 26_657
TRADER_COLLATERAL_ATOMS = 1_000_000 * 10**QUOTE_DECIMALS
"""Each generated trader starts with $1,000,000 of collateral."""
INSURANCE_FUND_ATOMS = 10_000_000 * 10**QUOTE_DECIMALS


@dataclass(frozen=True)
class GeneratedNetwork:
    genesis: Genesis
    node_homes: tuple[Path, ...]
    wallets: tuple[Path, ...]


def generate_network(
    out_dir: Path,
    n_validators: int = 4,
    n_traders: int = 8,
    hosts: list[str] | None = None,
    base_port: int = DEFAULT_P2P_PORT,
    chain_name: str = "lockstep-local",
    genesis_time_ms: int = 0,
) -> GeneratedNetwork:
    """Create keys, wallets and a genesis for ``n_validators`` validators under ``out_dir``."""
    if hosts is not None and len(hosts) != n_validators:
        raise ValueError(f"--hosts names {len(hosts)} hosts for {n_validators} validators")
    keys = [ValidatorKeys.generate() for _ in range(n_validators)]
    traders = [Signer(os.urandom(SEED_BYTES)) for _ in range(n_traders)]
    validators = []
    for i, k in enumerate(keys):
        host, port = (hosts[i], base_port) if hosts else ("127.0.0.1", base_port + 10 * i)
        validators.append(
            Validator(k.public_key, k.vrf_public_key, 1, f"{host}:{port}", f"node{i}")
        )
    accounts = tuple(
        sorted(
            (Account(t.public_key, TRADER_COLLATERAL_ATOMS) for t in traders), key=lambda a: a.owner
        )
    )
    genesis = Genesis(
        chain_name=chain_name,
        genesis_time_ms=genesis_time_ms,
        validators=tuple(validators),
        markets=default_markets(),
        accounts=accounts,
        insurance_fund=INSURANCE_FUND_ATOMS,
        timing=default_timing(),
    )
    text = genesis_to_toml(genesis)
    homes = []
    for i, k in enumerate(keys):
        home = out_dir / f"node{i}"
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "data").mkdir(parents=True, exist_ok=True)
        (home / "config" / "genesis.toml").write_text(text)
        save_validator_keys(home / "config" / "validator_key.json", k)
        homes.append(home)
    wallets = []
    for j, t in enumerate(traders):
        path = out_dir / "wallets" / f"trader{j}.json"
        save_wallet(path, t, passphrase=None)
        wallets.append(path)
    (out_dir / "genesis.toml").write_text(text)
    return GeneratedNetwork(genesis, tuple(homes), tuple(wallets))
