"""Write the files of a network: genesis, validator keys, configs, funded trader wallets.

``lockstep testnet generate`` lays out one home directory per validator (CometBFT style:
``<dir>/node<i>/config/{config.toml,genesis.toml,validator_key.json}`` and ``data/``, made by
``node.home.init_home``), plus ``<dir>/wallets/trader<j>.json`` funded in the genesis. Each
node's ``config.toml`` lists every other validator as a peer. Without ``--hosts`` everything is
on 127.0.0.1 and node i uses ports ``base + 10*i`` (p2p), ``+1`` (RPC) and ``+2`` (metrics), so
ten nodes fit in a hundred ports without clashing. With ``--hosts h1,h2,…`` validator i
advertises ``h_i`` as its p2p host and every node listens on 0.0.0.0 with the base ports, so
the same files run across several machines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
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
from lockstep.node.config import (
    DEFAULT_P2P_PORT,
    DEFAULT_RPC_PORT,
    HostPort,
    NodeConfig,
    PeerAddress,
)
from lockstep.node.genesis_file import genesis_to_toml
from lockstep.node.home import HomeError, HomeLayout, init_home
from lockstep.node.keys import ValidatorKeys, save_wallet

__all__ = ["DEFAULT_P2P_PORT", "DEFAULT_RPC_PORT", "GeneratedNetwork", "generate_network"]

PORT_STRIDE = 10
"""Ports between consecutive local nodes: p2p at +0, RPC at +1, metrics at +2."""
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
        host, port = (hosts[i], base_port) if hosts else ("127.0.0.1", base_port + PORT_STRIDE * i)
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
    for i in range(n_validators):
        existing = HomeLayout(out_dir / f"node{i}").validator_key_file
        if existing.exists():
            raise HomeError(
                f"{existing} already exists; refusing to overwrite a network's validator keys "
                f"(choose a new directory)"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    genesis_path = out_dir / "genesis.toml"
    genesis_path.write_text(genesis_to_toml(genesis))
    homes = []
    for i, k in enumerate(keys):
        home = out_dir / f"node{i}"
        init_home(
            home,
            genesis_path,
            f"node{i}",
            config=_node_config(i, validators, base_port, multi_host=hosts is not None),
            keys=k,
        )
        homes.append(home)
    wallets = []
    for j, t in enumerate(traders):
        path = out_dir / "wallets" / f"trader{j}.json"
        save_wallet(path, t, passphrase=None)
        wallets.append(path)
    return GeneratedNetwork(genesis, tuple(homes), tuple(wallets))


def _node_config(
    i: int, validators: list[Validator], base_port: int, multi_host: bool
) -> NodeConfig:
    """Node i's config: its listeners, and every other validator as a peer."""
    peers = tuple(
        PeerAddress(v.public_key, HostPort.parse(v.address, f"validators[{j}].address"))
        for j, v in enumerate(validators)
        if j != i
    )
    if multi_host:
        host, p2p = "0.0.0.0", base_port
    else:
        host, p2p = "127.0.0.1", base_port + PORT_STRIDE * i
    cfg = NodeConfig().with_ports(host, p2p, p2p + 1, p2p + 2)
    return replace(cfg, p2p=replace(cfg.p2p, peers=peers))
