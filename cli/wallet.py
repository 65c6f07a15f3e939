"""``lockstep wallet``: create a key, show its address, and sign and send trades.

Thin: argument parsing and printing live here; transaction building is in ``cli/txbuild.py``,
unit conversion in ``node/units.py``, key files in ``node/keys.py``, HTTP in
``cli/rpc_client.py``. Every trading command builds one :class:`SignedTx` for the chain named by
a genesis file (``--genesis`` or ``--home``), then either prints it (``--dry-run``) or submits
it to a node (``--rpc URL``). ``--json`` prints one machine-readable object instead of tables.

Passphrases come from ``LOCKSTEP_WALLET_PASSPHRASE`` when set (scripts), else from a prompt
that does not echo. They are never accepted as a command-line argument, where ``ps`` and shell
history would show them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockstep.consensus import limits
from lockstep.consensus.actions import (
    Cancel,
    CancelAll,
    CancelOrder,
    Order,
    OrderType,
    PlaceOrder,
    SignedTx,
    Transfer,
    TxBody,
)
from lockstep.consensus.crypto import SEED_BYTES, Signer
from lockstep.consensus.genesis import Genesis, Market
from lockstep.node.config import load_config
from lockstep.node.genesis_file import read_genesis_file
from lockstep.node.home import HomeLayout
from lockstep.node.keys import load_wallet, save_wallet, wallet_is_encrypted, wallet_public_key
from lockstep.node.tx_json import tx_to_json
from lockstep.node.units import (
    amount_to_atoms,
    find_market,
    format_amount,
    format_price,
    format_size,
)

from .errors import CLIError
from .output import print_help_of, print_rows
from .rpc_client import DEFAULT_WAIT_MS, MAX_WAIT_MS, get_status, submit
from .txbuild import ORDER_KINDS, SIDES, new_nonce, place_order

PASSPHRASE_ENV = "LOCKSTEP_WALLET_PASSPHRASE"
WALLET_ENV = "LOCKSTEP_WALLET"
HOME_ENV = "LOCKSTEP_HOME"
DEFAULT_WALLET = Path("~/.lockstep/wallet.json")
DEFAULT_EXPIRES_IN_BLOCKS = 100
"""About 5 s at the default 50 ms block interval: long enough to be included under load, short
enough that a stuck order does not surprise its owner much later."""


# --------------------------------------------------------------------------- helpers


def _wallet_path(args: argparse.Namespace) -> Path:
    raw = args.file or os.environ.get(WALLET_ENV) or str(DEFAULT_WALLET)
    return Path(raw).expanduser()


def _passphrase(prompt: str, confirm: bool = False) -> str:
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env
    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("Repeat passphrase: ") != first:
            raise CLIError("the passphrases differ")
    except EOFError:
        raise CLIError(
            f"no passphrase: run in a terminal, or set {PASSPHRASE_ENV} for scripts"
        ) from None
    return first


def _signer(path: Path) -> Signer:
    if not wallet_is_encrypted(path):  # also refuses a file others can read
        return load_wallet(path)
    return load_wallet(path, _passphrase(f"Passphrase for {path}: "))


def _genesis(args: argparse.Namespace) -> Genesis:
    """The chain to sign for: ``--genesis PATH``, else the genesis of ``--home`` (or env)."""
    if args.genesis:
        return read_genesis_file(Path(args.genesis).expanduser())
    home = args.home or os.environ.get(HOME_ENV)
    if not home:
        raise CLIError(
            f"name the chain: give --genesis PATH, or --home DIR of a node (or set {HOME_ENV})"
        )
    layout = HomeLayout(Path(home).expanduser())
    if layout.config_file.exists():
        cfg = load_config(layout.config_file)
        return read_genesis_file(cfg.resolve(layout.config_file, cfg.node.genesis_file))
    return read_genesis_file(layout.genesis_file)


def _u64(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"{text} is outside 0..2^64-1")
    return value


def _key_hex(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected 64 hex characters (a public key)") from None
    if len(raw) != 32:
        raise argparse.ArgumentTypeError(f"expected a 32-byte public key, got {len(raw)} bytes")
    return raw


@dataclass(frozen=True, slots=True)
class _Chain:
    """What a trading command needs about the chain: its genesis and, maybe, a live node."""

    genesis: Genesis
    height: int | None


def _connect(args: argparse.Namespace) -> _Chain:
    genesis = _genesis(args)
    if not args.rpc:
        return _Chain(genesis, None)
    status = get_status(args.rpc)
    if status["chain_id"] != genesis.chain_id.hex():
        raise CLIError(
            f"the node at {args.rpc} is on chain {status['chain_id']}, but your genesis names "
            f"chain {genesis.chain_id.hex()} ({genesis.chain_name}); refusing to sign for it"
        )
    return _Chain(genesis, status["height"])


def _expiry_height(args: argparse.Namespace, chain: _Chain) -> int:
    if args.expiry_height is not None:
        return int(args.expiry_height)
    if not 1 <= args.expires_in <= limits.MAX_EXPIRY_WINDOW_BLOCKS:
        raise CLIError(f"--expires-in must be in 1..{limits.MAX_EXPIRY_WINDOW_BLOCKS} blocks")
    if chain.height is None:
        raise CLIError(
            "--expiry-height is required without --rpc (there is no node to ask for the "
            "current height)"
        )
    return chain.height + int(args.expires_in)


def _header(args: argparse.Namespace, signer: Signer, chain: _Chain) -> dict[str, Any]:
    nonce = args.nonce if args.nonce is not None else new_nonce()
    return {
        "signer": signer.public_key,
        "nonce": nonce,
        "expiry_height": _expiry_height(args, chain),
    }


# --------------------------------------------------------------------------- output


def _human(body: TxBody, genesis: Genesis) -> dict[str, str]:
    """The body's numbers in human units, for people reading the output."""
    out: dict[str, str] = {}
    for action in body.actions():
        m = genesis.market(action.market)
        assert m is not None
        out["market"] = m.symbol
        if isinstance(action, PlaceOrder):
            limit = "worst_price" if action.order_type == OrderType.MARKET else "price"
            out[limit] = format_price(m, action.price)
            out["size"] = format_size(m, action.size)
            out["notional"] = format_amount(action.price * action.size * m.contract_multiplier)
    if isinstance(body, Transfer):
        out["amount"] = format_amount(body.amount)
    return out


def _emit(
    args: argparse.Namespace, tx: SignedTx, chain: _Chain, result: dict[str, Any] | None
) -> None:
    doc = {
        "chain_id": chain.genesis.chain_id.hex(),
        **tx_to_json(tx, chain.genesis.chain_id),
        "human": _human(tx.body, chain.genesis),
        "submitted": result,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    rows: list[tuple[str, str]] = [("tx id", doc["tx_id"])]
    rows += [(name, str(value)) for name, value in _flatten(doc["tx"]["body"])]
    rows += [(f"{name} (human)", value) for name, value in doc["human"].items()]
    rows.append(("bytes", str(len(tx.encode()))))
    if args.verbose:
        rows.append(("tx hex", doc["tx_hex"]))
    if result is None:
        rows.append(("submitted", "no (dry run)"))
    else:
        for key, value in result.items():
            rows.append((f"node: {key}", value if isinstance(value, str) else json.dumps(value)))
    print_rows(f"{type(tx.body).__name__} on {chain.genesis.chain_name}", rows)


def _flatten(obj: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in obj.items():
        if key == "type" and prefix:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.append((name, value["type"]))
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


def _sign_and_send(args: argparse.Namespace, body: TxBody, signer: Signer, chain: _Chain) -> int:
    tx = body.sign(signer, chain.genesis.chain_id)
    assert tx.verify(chain.genesis.chain_id) == tx.tx_id(chain.genesis.chain_id)
    result = None
    if not args.dry_run:
        result = submit(args.rpc, tx.encode(), wait=args.wait, wait_ms=args.wait_ms)
    _emit(args, tx, chain, result)
    return 0


def _prepare(args: argparse.Namespace) -> tuple[Signer, _Chain]:
    if not args.dry_run and not args.rpc:
        raise CLIError("nothing to do: give --rpc URL to submit, or --dry-run to print the tx")
    if not 1 <= args.wait_ms <= MAX_WAIT_MS:
        raise CLIError(f"--wait-ms must be in 1..{MAX_WAIT_MS}")
    if args.wait and args.dry_run:
        raise CLIError("--wait needs a submission; it cannot go with --dry-run")
    chain = _connect(args)
    return _signer(_wallet_path(args)), chain


def _market(chain: _Chain, name: str) -> Market:
    return find_market(chain.genesis, name)


# --------------------------------------------------------------------------- commands


def cmd_new(args: argparse.Namespace) -> int:
    path = _wallet_path(args)
    if path.exists():
        raise CLIError(f"{path} already exists; refusing to overwrite a wallet")
    signer = Signer(os.urandom(SEED_BYTES))
    if args.insecure:
        save_wallet(path, signer, None)
    else:
        save_wallet(path, signer, _passphrase(f"New passphrase for {path}: ", confirm=True))
    doc = {"address": signer.public_key.hex(), "file": str(path), "encrypted": not args.insecure}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    rows = [("address", doc["address"]), ("file", f"{path} (mode 0600)")]
    if args.insecure:
        rows.append(("encryption", "[red]none (--insecure): testnets only[/red]"))
    else:
        rows.append(("encryption", "Argon2id + XSalsa20-Poly1305"))
    print_rows("New wallet", rows)
    return 0


def cmd_address(args: argparse.Namespace) -> int:
    address = wallet_public_key(_wallet_path(args)).hex()
    print(json.dumps({"address": address}) if args.json else address)
    return 0


def cmd_place(args: argparse.Namespace) -> int:
    signer, chain = _prepare(args)
    m = _market(chain, args.market)
    place = place_order(
        m,
        args.side,
        args.type,
        args.size,
        args.price,
        args.worst_price,
        reduce_only=args.reduce_only,
        client_id=args.client_id,
    )
    return _sign_and_send(args, Order(**_header(args, signer, chain), place=place), signer, chain)


def cmd_cancel(args: argparse.Namespace) -> int:
    signer, chain = _prepare(args)
    action = CancelOrder(_market(chain, args.market).market_id, args.client_id)
    return _sign_and_send(
        args, Cancel(**_header(args, signer, chain), cancel=action), signer, chain
    )


def cmd_cancel_all(args: argparse.Namespace) -> int:
    signer, chain = _prepare(args)
    action = CancelAll(_market(chain, args.market).market_id)
    return _sign_and_send(
        args, Cancel(**_header(args, signer, chain), cancel=action), signer, chain
    )


def cmd_transfer(args: argparse.Namespace) -> int:
    signer, chain = _prepare(args)
    if args.to == signer.public_key:
        raise CLIError("--to is this wallet's own address")
    body = Transfer(**_header(args, signer, chain), to=args.to, amount=amount_to_atoms(args.amount))
    return _sign_and_send(args, body, signer, chain)


# --------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", help=f"wallet file (default: ${WALLET_ENV} or {DEFAULT_WALLET})")
    p.add_argument("--json", action="store_true", help="print one JSON object, not tables")


def _trading(p: argparse.ArgumentParser) -> None:
    _common(p)
    chain = p.add_argument_group("chain and node")
    chain.add_argument("--genesis", help="genesis.toml of the chain to sign for")
    chain.add_argument("--home", help=f"a node home whose genesis to use (or ${HOME_ENV})")
    chain.add_argument("--rpc", help="node RPC URL, e.g. http://127.0.0.1:26657")
    chain.add_argument("--dry-run", action="store_true", help="build and sign, print, send nothing")
    chain.add_argument(
        "--wait", action="store_true", help="wait until the tx is finalized (or dropped)"
    )
    chain.add_argument(
        "--wait-ms",
        type=int,
        default=DEFAULT_WAIT_MS,
        metavar="MS",
        help=f"with --wait: how long the node waits (default %(default)s, at most {MAX_WAIT_MS})",
    )
    tx = p.add_argument_group("transaction header")
    tx.add_argument(
        "--expires-in",
        type=int,
        default=DEFAULT_EXPIRES_IN_BLOCKS,
        metavar="BLOCKS",
        help="expiry: the node's current height + BLOCKS (default %(default)s; needs --rpc)",
    )
    tx.add_argument(
        "--expiry-height", type=_u64, metavar="H", help="last block height that may include it"
    )
    tx.add_argument(
        "--nonce", type=_u64, help="replay nonce (default: time-based random, see docs/rpc.md)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also show the tx bytes")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``wallet`` and its actions to the top-level parser."""
    wallet = sub.add_parser("wallet", help="keys and trading from a wallet")
    wsub = wallet.add_subparsers(dest="wallet_command", metavar="ACTION")
    wallet.set_defaults(func=lambda args: print_help_of(wallet))

    new = wsub.add_parser("new", help="create a wallet key file (mode 0600)")
    _common(new)
    new.add_argument(
        "--insecure", action="store_true", help="store the seed unencrypted (testnets only)"
    )
    new.set_defaults(func=cmd_new)

    address = wsub.add_parser("address", help="print the wallet's address (public key)")
    _common(address)
    address.set_defaults(func=cmd_address)

    place = wsub.add_parser("place", help="place an order")
    _trading(place)
    place.add_argument("--market", required=True, help="symbol (BTC-PERP) or market id")
    place.add_argument("--side", required=True, choices=sorted(SIDES))
    place.add_argument("--type", default="limit", choices=list(ORDER_KINDS))
    place.add_argument("--size", required=True, help="in base units, e.g. 0.25")
    place.add_argument("--price", help="limit price in quote per base unit, e.g. 60123.5")
    place.add_argument("--worst-price", help="market orders: the worst price to trade at")
    place.add_argument("--reduce-only", action="store_true", help="may only shrink a position")
    place.add_argument(
        "--client-id", type=_u64, help="order id for cancels (default: random 63-bit)"
    )
    place.set_defaults(func=cmd_place)

    cancel = wsub.add_parser("cancel", help="cancel one open order by its client id")
    _trading(cancel)
    cancel.add_argument("--market", required=True)
    cancel.add_argument("--client-id", type=_u64, required=True)
    cancel.set_defaults(func=cmd_cancel)

    cancel_all = wsub.add_parser("cancel-all", help="cancel all open orders in a market")
    _trading(cancel_all)
    cancel_all.add_argument("--market", required=True)
    cancel_all.set_defaults(func=cmd_cancel_all)

    transfer = wsub.add_parser("transfer", help="move collateral to another account")
    _trading(transfer)
    transfer.add_argument("--to", type=_key_hex, required=True, help="recipient public key hex")
    transfer.add_argument("--amount", required=True, help="in quote currency, e.g. 100.5")
    transfer.set_defaults(func=cmd_transfer)
