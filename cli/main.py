"""``lockstep``: run a node, trade from a wallet, run local testnets and benchmarks.

Thin on purpose: each subcommand parses its arguments, calls into the packages, and prints.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

from lockstep.cli import node, testnet_cmd, wallet

__version__ = version("lockstep")


def _cmd_testnet_generate(args: argparse.Namespace) -> int:
    from lockstep.node.config import load_config
    from lockstep.node.home import HomeLayout
    from lockstep.testnet.generate import generate_network

    hosts = args.hosts.split(",") if args.hosts else None
    n = len(hosts) if hosts else args.nodes
    net = generate_network(
        Path(args.dir),
        n_validators=n,
        n_traders=args.traders,
        hosts=hosts,
        base_port=args.base_port,
    )
    print(f"chain {net.genesis.chain_name}  id {net.genesis.chain_id.hex()}")
    for home, v in zip(net.node_homes, net.genesis.validators, strict=True):
        rpc = load_config(HomeLayout(home).config_file).rpc.listen_address
        print(f"  {v.name:8} {v.public_key.hex()[:16]}…  p2p {v.address:22} rpc {rpc!s:22} {home}")
    print(f"  {len(net.wallets)} funded trader wallets in {Path(args.dir) / 'wallets'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockstep",
        description="Lockstep: a peer-to-peer node for a decentralized perpetual-futures exchange.",
    )
    parser.add_argument("--version", action="version", version=f"lockstep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    testnet = sub.add_parser("testnet", help="local multi-node networks")
    tsub = testnet.add_subparsers(dest="testnet_command", metavar="ACTION")
    gen = tsub.add_parser("generate", help="write genesis, keys and wallets for a network")
    gen.add_argument("--dir", default="./lockstep-testnet", help="output directory")
    gen.add_argument("--nodes", type=int, default=4, help="number of validators")
    gen.add_argument("--traders", type=int, default=8, help="number of funded trader wallets")
    gen.add_argument("--hosts", help="comma-separated p2p hosts, one per validator")
    gen.add_argument(
        "--base-port",
        type=int,
        default=26_656,
        help="p2p port of node0; node i uses base+10i (p2p), +1 (RPC), +2 (metrics)",
    )
    gen.set_defaults(func=_cmd_testnet_generate)
    testnet_cmd.register_actions(tsub)

    node.register(sub)
    wallet.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0 if args.command is None else 2
    from lockstep.cli.errors import user_errors

    try:
        return int(func(args) or 0)
    except user_errors() as e:
        print(f"lockstep: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
