"""Reading and writing ``genesis.toml``: the file form of :class:`consensus.genesis.Genesis`.

Parsing and validation live in the consensus package (they are consensus rules); writing TOML
needs ``tomli-w``, which the sans-I/O core does not depend on, so the file edge lives here.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w
from lockstep.consensus.genesis import Genesis, GenesisError, genesis_to_dict, load_genesis


def genesis_to_toml(g: Genesis) -> str:
    """The TOML form of a genesis, with a header naming its chain id."""
    header = (
        f"# Lockstep genesis for chain {g.chain_name!r}.\n"
        f"# chain id = SHA-256(domain || canonical CBOR) = {g.chain_id.hex()}\n"
        "# Integers only: prices in ticks, sizes in lots, money in quote atoms (1e-6 USD),\n"
        "# rates in parts per million. Editing anything of substance makes a new chain.\n\n"
    )
    return header + tomli_w.dumps(genesis_to_dict(g))


def write_genesis_file(path: Path, g: Genesis) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(genesis_to_toml(g))


def read_genesis_file(path: Path) -> Genesis:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GenesisError(f"{path}: no genesis file") from None
    except OSError as e:
        raise GenesisError(f"{path}: cannot read: {e}") from None
    return load_genesis(text)
