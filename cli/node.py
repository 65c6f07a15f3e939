"""``lockstep node``: set up a node's home directory (running it comes with the daemon)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .output import print_help_of, print_rows

DEFAULT_HOME = Path("~/.lockstep")
HOME_ENV = "LOCKSTEP_HOME"


def cmd_init(args: argparse.Namespace) -> int:
    from lockstep.node.home import init_home

    home = Path(args.home or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()
    genesis = Path(args.genesis).expanduser() if args.genesis else None
    result = init_home(home, genesis, args.moniker)
    layout = result.layout
    doc = {
        "home": str(layout.home),
        "validator_public_key": result.validator_public_key.hex(),
        "validator_key_file": str(layout.validator_key_file),
        "created_key": result.created_key,
        "config_file": str(layout.config_file),
        "created_config": result.created_config,
        "genesis_file": str(layout.genesis_file),
        "copied_genesis": result.copied_genesis,
        "chain_id": result.genesis.chain_id.hex() if result.genesis else None,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    key_note = "created (mode 0600)" if result.created_key else "found, kept"
    rows = [
        ("home", str(layout.home)),
        ("validator key", f"{doc['validator_public_key']}  {key_note}"),
        ("config", f"{layout.config_file}  {'written' if result.created_config else 'kept'}"),
    ]
    if result.genesis is not None:
        what = "copied" if result.copied_genesis else "already present"
        rows.append(("genesis", f"{layout.genesis_file}  {what}"))
        rows.append(("chain id", str(doc["chain_id"])))
    elif not layout.genesis_file.exists():
        rows.append(
            ("genesis", f"none yet: copy the chain's genesis.toml to {layout.genesis_file}")
        )
    print_rows("Node home", rows)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``node`` and its actions to the top-level parser."""
    node = sub.add_parser("node", help="set up and run a node")
    nsub = node.add_subparsers(dest="node_command", metavar="ACTION")
    node.set_defaults(func=lambda args: print_help_of(node))
    init = nsub.add_parser("init", help="create a home: config.toml, validator key, genesis, data/")
    init.add_argument("--home", help=f"home directory (default: ${HOME_ENV} or {DEFAULT_HOME})")
    init.add_argument("--genesis", help="genesis.toml of the chain to join (copied)")
    init.add_argument("--moniker", default="node", help="this node's name (default %(default)s)")
    init.add_argument("--json", action="store_true", help="print one JSON object")
    init.set_defaults(func=cmd_init)

    from lockstep.cli.node_run import add_run_parser

    add_run_parser(nsub)
