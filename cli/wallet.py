"""``lockstep wallet``: create a key, show its address, sign and send trades, read the account.

Thin: argument parsing and printing live here; transaction building is in ``cli/txbuild.py``,
unit conversion in ``node/exchange/units.py``, key files in ``node/keys.py``, HTTP in
``cli/rpc_client.py``. Every trading command builds one :class:`SignedTx` for the chain named by
a genesis file (``--genesis`` or ``--home``), then either prints it (``--dry-run``) or submits
it to a node. ``--json`` prints one machine-readable object instead of tables.

The read commands (``balance``, ``positions``, ``orders``, ``book``, ``trades``, ``status``) sign
nothing and need no passphrase: they GET one route of a node and print the node's JSON
(``--json``) or tables in human units. The node's answers carry both integer and human fields
(docs/rpc.md), so the wallet converts nothing it can read off.

Which node: ``--rpc URL`` if given, else the one the named files record (``NODE_RULE`` below,
printed by ``--help``), so the commands a testnet's README shows need no URL.

Passphrases come from ``LOCKSTEP_WALLET_PASSPHRASE`` when set (scripts), else from a prompt
that does not echo. They are never accepted as a command-line argument, where ``ps`` and shell
history would show them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import zip_longest
from pathlib import Path
from typing import Any

from lockstep.consensus import limits
from lockstep.consensus.actions import (
    Action,
    Batch,
    Cancel,
    CancelAll,
    CancelOrder,
    ModifyOrder,
    Order,
    OrderType,
    PlaceOrder,
    PlaceTrigger,
    ScheduleCancel,
    SignedTx,
    Transfer,
    TxBody,
    Withdraw,
)
from lockstep.consensus.crypto import SEED_BYTES, Signer
from lockstep.consensus.genesis import Genesis, Market
from lockstep.node.config import HostPort, NodeConfig, load_config
from lockstep.node.exchange.mempool_rules import MAX_SCHEDULE_AHEAD_BLOCKS
from lockstep.node.exchange.units import (
    UnitError,
    amount_to_atoms,
    find_market,
    format_amount,
    format_price,
    format_size,
)
from lockstep.node.genesis_file import read_genesis_file
from lockstep.node.home import HomeLayout
from lockstep.node.keys import load_wallet, save_wallet, wallet_is_encrypted, wallet_public_key
from lockstep.node.tx_json import tx_to_json

from .errors import CLIError
from .output import print_help_of, print_rows, print_table
from .rpc_client import (
    DEFAULT_RPC_URL,
    DEFAULT_WAIT_MS,
    MAX_BOOK_DEPTH,
    MAX_TRADES_LIMIT,
    MAX_WAIT_MS,
    RPCError,
    get_object,
    get_status,
    submit,
)
from .txbuild import (
    ORDER_KINDS,
    SIDES,
    TRIGGER_KINDS,
    modify_order,
    new_nonce,
    place_order,
    place_trigger,
)

PASSPHRASE_ENV = "LOCKSTEP_WALLET_PASSPHRASE"
WALLET_ENV = "LOCKSTEP_WALLET"
HOME_ENV = "LOCKSTEP_HOME"
DEFAULT_WALLET = Path("~/.lockstep/wallet.json")
DEFAULT_EXPIRES_IN_BLOCKS = 100
"""About 5 s at the default 50 ms block interval: long enough to be included under load, short
enough that a stuck order does not surprise its owner much later."""
NETWORK_FIRST_NODE = "node0"
"""The node of a network directory (``testnet up`` / ``testnet generate``) the wallet talks to."""
WALLETS_DIR = "wallets"
"""Where a network directory keeps its funded trader wallets."""
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}
"""A listener on every interface, and the loopback address that reaches it on its machine."""
NODE_RULE = f"""\
which node, when --rpc is not given (--rpc URL always wins); the first that applies:
  1. --home DIR: that node, at the [rpc] listen_address of its config.toml
  2. --genesis PATH in a node's config/ directory (beside a config.toml): that node, as in 1
  3. --genesis PATH in a network directory of `lockstep testnet up` or `testnet generate`
     (one holding {NETWORK_FIRST_NODE}/): that network's {NETWORK_FIRST_NODE}, at its \
[rpc] listen_address
  4. ${HOME_ENV}: that node, as in 1
  5. the wallet file (--file, ${WALLET_ENV}) in a network directory's {WALLETS_DIR}/: as in 3
  6. otherwise this machine's node at the default port, {DEFAULT_RPC_URL}
  A listener on every interface (0.0.0.0) is reached at 127.0.0.1 in 1, 2 and 4 (you are on
  the node's machine), and in 3 and 5 at the host {NETWORK_FIRST_NODE} advertises in the genesis
  (a network directory may be a copy on another machine). --dry-run contacts no node unless
  --rpc is given, so offline signing stays offline.
"""

TRIGGER_HELP = """\
rest untriggered until the mark price reaches --trigger-price, then enter as the order
above (--type limit at --price, or --type market). The two flags go together, with no
default kind: a wrong one would fire on the opposite move.
  buy stop, sell take-profit   fire when the mark rises to the trigger price
  sell stop, buy take-profit   fire when the mark falls to it
A trigger price the mark has already reached is refused (TRIGGER_WRONG_SIDE). A fired
market trigger trades within the market's trigger_slippage_ppm of the mark, so it takes
no --price or --worst-price. `wallet cancel` and `cancel-all` reach triggers too.
"""


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


def _destination_hex(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected hex bytes") from None
    if not 1 <= len(raw) <= limits.MAX_WITHDRAW_DESTINATION_BYTES:
        raise argparse.ArgumentTypeError(
            f"expected 1..{limits.MAX_WITHDRAW_DESTINATION_BYTES} bytes, got {len(raw)}"
        )
    return raw


def _bounded(name: str, hi: int) -> Callable[[str], int]:
    """An argparse type for an integer in 1..hi (the node's own bound, so no 400 later)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not 1 <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be in 1..{hi}")
        return value

    return parse


@dataclass(frozen=True, slots=True)
class _Chain:
    """What a trading command needs about the chain: its genesis and, maybe, a live node."""

    genesis: Genesis
    height: int | None


def _connect(args: argparse.Namespace, refusal: str = "refusing to sign for it") -> _Chain:
    """The genesis, and the node's height after checking the node is on that chain."""
    genesis = _genesis(args)
    if not args.rpc:
        return _Chain(genesis, None)
    status = get_status(args.rpc)
    if status["chain_id"] != genesis.chain_id.hex():
        raise CLIError(
            f"the node at {args.rpc}{_why(args)} is on chain {status['chain_id']}, but your "
            f"genesis names chain {genesis.chain_id.hex()} ({genesis.chain_name}); {refusal}"
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
        if isinstance(action, ScheduleCancel):
            out["cancel_after_height"] = str(action.height) if action.height else "cleared"
            continue
        m = genesis.market(action.market)
        assert m is not None
        out["market"] = m.symbol
        if isinstance(action, PlaceOrder):
            limit = "worst_price" if action.order_type == OrderType.MARKET else "price"
            out[limit] = format_price(m, action.price)
            out["size"] = format_size(m, action.size)
            out["notional"] = format_amount(action.price * action.size * m.contract_multiplier)
        elif isinstance(action, PlaceTrigger):
            out["trigger_price"] = format_price(m, action.trigger_price)
            out["price"] = (
                format_price(m, action.price)
                if action.order_type == OrderType.LIMIT
                else f"market, within {action_slippage(m.trigger_slippage_ppm)} of the mark"
            )
            out["size"] = format_size(m, action.size)
        elif isinstance(action, ModifyOrder):
            out["price"] = format_price(m, action.price)
            out["remaining_size"] = format_size(m, action.size)
    if isinstance(body, Transfer | Withdraw):
        out["amount"] = format_amount(body.amount)
    return out


def action_slippage(ppm: int) -> str:
    """Parts per million as a percentage for people (``50000`` → ``5%``)."""
    return f"{ppm / 10_000:g}%"


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
    if not 1 <= args.wait_ms <= MAX_WAIT_MS:
        raise CLIError(f"--wait-ms must be in 1..{MAX_WAIT_MS}")
    if args.wait and args.dry_run:
        raise CLIError("--wait needs a submission; it cannot go with --dry-run")
    chain = _connect(args)
    return _signer(_wallet_path(args)), chain


def _market(chain: _Chain, name: str) -> Market:
    return find_market(chain.genesis, name)


# --------------------------------------------------------------------------- which node


@dataclass(frozen=True, slots=True)
class NodeChoice:
    """The node a command talks to, and which file named it (for messages)."""

    url: str
    source: str


def _url(host: str, port: int) -> str:
    return f"http://{HostPort(host, port)}"


def _listen_url(cfg: NodeConfig, wildcard_host: str | None = None) -> str:
    """The URL reaching ``[rpc] listen_address``; a wildcard listener at ``wildcard_host``, else
    at the loopback address of its family (the caller is on the node's machine)."""
    hp = cfg.rpc.listen_address
    host = hp.host
    if host in WILDCARD_HOSTS:
        host = wildcard_host or WILDCARD_HOSTS[host]
    return _url(host, hp.port)


def _home_node(home: Path, source: str) -> NodeChoice:
    """A node home's RPC listener (the config default if the home has no config.toml)."""
    layout = HomeLayout(home)
    if not layout.config_file.exists():
        return NodeChoice(DEFAULT_RPC_URL, f"{source}, without config.toml")
    return NodeChoice(_listen_url(load_config(layout.config_file)), source)


def _network_node(net_dir: Path, source: str) -> NodeChoice | None:
    """The first node of a network directory, or None if ``net_dir`` is not one.

    A wildcard listener (``testnet generate --hosts`` writes 0.0.0.0) is reached at the host the
    node advertises as a validator: the directory may be a copy on a machine without nodes.
    """
    config_file = HomeLayout(net_dir / NETWORK_FIRST_NODE).config_file
    if not config_file.exists():
        return None
    cfg = load_config(config_file)
    advertised = None
    if cfg.rpc.listen_address.host in WILDCARD_HOSTS and (net_dir / "genesis.toml").exists():
        genesis = read_genesis_file(net_dir / "genesis.toml")
        for v in genesis.validators:
            if v.name == cfg.node.moniker:
                advertised = HostPort.parse(v.address, f"validator {v.name} address").host
    where = f"{NETWORK_FIRST_NODE} of the network in {net_dir}, by {source}"
    return NodeChoice(_listen_url(cfg, advertised), where)


def choose_node(args: argparse.Namespace) -> NodeChoice:
    """The node to talk to when ``--rpc`` is not given: the rule of ``NODE_RULE``.

    Why from the named files and not a guess from the genesis' validator addresses: those are
    peer-to-peer endpoints, and a node's RPC listens on 127.0.0.1 unless its operator opens it,
    so a guess would send a trader's orders to a machine the trader did not choose, or time out.
    """
    if getattr(args, "home", None):
        home = Path(args.home).expanduser()
        return _home_node(home, f"the node of --home {home}")
    if getattr(args, "genesis", None):
        beside = Path(args.genesis).expanduser().parent
        home = HomeLayout(beside.parent)
        if beside == home.config_dir and home.config_file.exists():
            return _home_node(home.home, f"the node of {home.home}, by --genesis")
        found = _network_node(beside, "--genesis")
        if found is not None:
            return found
    if os.environ.get(HOME_ENV):
        home = Path(os.environ[HOME_ENV]).expanduser()
        return _home_node(home, f"the node of ${HOME_ENV} {home}")
    if hasattr(args, "file"):
        folder = _wallet_path(args).parent
        if folder.name == WALLETS_DIR:
            found = _network_node(folder.parent, "the wallet file")
            if found is not None:
                return found
    return NodeChoice(DEFAULT_RPC_URL, "this machine's node")


def _why(args: argparse.Namespace) -> str:
    """`` (…, as no --rpc was given)`` when the node was chosen by the rule, for messages."""
    source = getattr(args, "rpc_source", None)
    return f" ({source}, as no --rpc was given)" if source else ""


def _with_node(command: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Run ``command`` with ``args.rpc`` set by the rule unless given (or offline, --dry-run).

    An unreachable chosen node is reported with where the choice came from, since the user
    typed no URL.
    """

    def run(args: argparse.Namespace) -> int:
        args.rpc_source = None
        if not args.rpc and not getattr(args, "dry_run", False):
            node = choose_node(args)
            args.rpc, args.rpc_source = node.url, node.source
        try:
            return command(args)
        except RPCError as e:
            if e.status is None and args.rpc_source:
                raise CLIError(f"{e}{_why(args)}; give --rpc URL") from None
            raise

    return run


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


def _batch_of(args: argparse.Namespace, signer: Signer, chain: _Chain, action: Action) -> int:
    """Sign and send one action that only a ``Batch`` body carries (triggers, modify, the
    dead man's switch)."""
    body = Batch(**_header(args, signer, chain), batch=(action,))
    return _sign_and_send(args, body, signer, chain)


def cmd_place(args: argparse.Namespace) -> int:
    if (args.trigger is None) != (args.trigger_price is None):
        raise CLIError(
            "a trigger order needs both --trigger-price and --trigger stop|take-profit (which "
            "way the mark must move to fire it)"
        )
    signer, chain = _prepare(args)
    m = _market(chain, args.market)
    if args.trigger is not None:
        trigger = place_trigger(
            m,
            args.side,
            args.trigger,
            args.type,
            args.size,
            args.trigger_price,
            args.price,
            args.worst_price,
            reduce_only=args.reduce_only,
            client_id=args.client_id,
        )
        return _batch_of(args, signer, chain, trigger)
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


def cmd_modify(args: argparse.Namespace) -> int:
    signer, chain = _prepare(args)
    m = _market(chain, args.market)
    action = modify_order(m, args.client_id, args.price, args.size, post_only=args.post_only)
    return _batch_of(args, signer, chain, action)


def cmd_schedule_cancel(args: argparse.Namespace) -> int:
    signer, chain = _prepare(args)
    if args.clear:
        height = 0
    elif args.height is not None:
        height = int(args.height)
    else:
        if chain.height is None:
            raise CLIError("--in-blocks needs the node's current height: give --rpc, or --height H")
        height = chain.height + int(args.in_blocks)
    return _batch_of(args, signer, chain, ScheduleCancel(height))


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


def cmd_withdraw(args: argparse.Namespace) -> int:
    signer, chain = _prepare(args)
    body = Withdraw(
        **_header(args, signer, chain),
        amount=amount_to_atoms(args.amount),
        destination=args.destination,
    )
    return _sign_and_send(args, body, signer, chain)


# --------------------------------------------------------------------------- reads


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2))


def _owner(args: argparse.Namespace) -> bytes:
    """``--account``, else the wallet's own address (read from its file; no passphrase)."""
    if args.account is not None:
        return bytes(args.account)
    path = _wallet_path(args)
    if not path.exists():
        raise CLIError(
            f"no wallet at {path}: give --file PATH, or --account HEX to read any account"
        )
    return wallet_public_key(path)


def _account(args: argparse.Namespace) -> dict[str, Any]:
    """``GET /v1/accounts/{hex}``; a 404 becomes a sentence about the account, not the URL."""
    owner = _owner(args).hex()
    try:
        return get_object(args.rpc, f"/v1/accounts/{owner}")
    except RPCError as e:
        if e.reason != "UNKNOWN_ACCOUNT":
            raise
        raise CLIError(
            f"no account {owner} on the chain of {args.rpc}{_why(args)} (an account exists "
            "once it holds collateral, from the genesis or a transfer)"
        ) from None


@dataclass(frozen=True, slots=True)
class _MarketRef:
    """A market as the read commands need it: its id for the URL, symbol and lot for people."""

    market_id: int
    symbol: str
    lot_size: Decimal

    def size(self, lots: int) -> str:
        """Lots as a human size with the lot's decimals (``0.500`` for 500 lots of 0.001)."""
        if type(lots) is not int:
            raise TypeError(f"expected an integer number of lots, got {lots!r}")
        return format(self.lot_size * lots, "f")


def _markets(args: argparse.Namespace) -> list[_MarketRef]:
    """The markets by which to resolve a symbol: the genesis if one is named, else the node's.

    A named genesis is checked against the node's chain id, as for signing: on another chain the
    same symbol may be another market id. Without one, ``/v1/markets`` of the node is the list,
    so reading needs nothing but a node.
    """
    if getattr(args, "genesis", None) or getattr(args, "home", None) or os.environ.get(HOME_ENV):
        genesis = _connect(args, "refusing to read its markets by this genesis").genesis
        return [_MarketRef(m.market_id, m.symbol, m.lot_size) for m in genesis.markets]
    doc = get_object(args.rpc, "/v1/markets")
    try:
        return [
            _MarketRef(int(m["market_id"]), str(m["symbol"]), Decimal(str(m["lot_size"])))
            for m in doc["markets"]
        ]
    except (KeyError, TypeError, ValueError, InvalidOperation):
        raise RPCError(args.rpc, "/v1/markets lacks market_id, symbol or lot_size") from None


def _find(markets: list[_MarketRef], name: str) -> _MarketRef:
    """By symbol (any case) or by id, as ``find_market`` does for the trading commands."""
    wanted = name.strip().upper()
    for m in markets:
        if m.symbol.upper() == wanted or (wanted.isdigit() and int(wanted) == m.market_id):
            return m
    known = ", ".join(m.symbol for m in markets) or "no markets"
    raise CLIError(f"unknown market {name!r}; this chain has {known}")


@contextmanager
def _node_shape(url: str, route: str) -> Iterator[None]:
    """Turn a missing or mistyped field of the node's answer into one line naming it.

    The tables read documented fields (docs/rpc.md); a node of another version may lack one,
    and that is worth a sentence, not a traceback.
    """
    try:
        yield
    except (KeyError, TypeError, ValueError, UnitError) as e:
        detail = f"no field {e}" if isinstance(e, KeyError) else str(e)
        raise RPCError(url, f"unexpected answer from {route}: {detail}") from None


def cmd_balance(args: argparse.Namespace) -> int:
    acct = _account(args)
    with _node_shape(args.rpc, "/v1/accounts"):
        if args.json:
            lists = ("positions", "open_orders", "triggers")
            _print_json({k: v for k, v in acct.items() if k not in lists})
            return 0
        equity, initial = acct["equity"], acct["initial_margin"]
        # What a Transfer or Withdraw may take now, by the executor's rule
        # (node/exchange/executor.py, ``_transfer``): at most the collateral, and what is left
        # must cover initial margin.
        free = max(0, min(acct["collateral"], equity - initial))
        rows = [
            ("account", acct["owner"]),
            ("height", str(acct["height"])),
            ("collateral", format_amount(acct["collateral"])),
            ("equity", format_amount(equity)),
            ("initial margin", format_amount(initial)),
            ("maintenance margin", format_amount(acct["maintenance_margin"])),
            ("free to withdraw", format_amount(free)),
            ("positions", str(len(acct["positions"]))),
            ("open orders", str(len(acct["open_orders"]))),
            ("triggers", str(len(acct["triggers"]))),
            ("scheduled cancel", _switch(acct["cancel_after_height"])),
        ]
    print_rows("Balance (quote currency)", rows)
    return 0


def _switch(after: int | None) -> str:
    """The dead man's switch for people."""
    if after is None:
        return "none"
    return f"every order and trigger, in block {after + 1} (the first above {after})"


def cmd_positions(args: argparse.Namespace) -> int:
    acct = _account(args)
    with _node_shape(args.rpc, "/v1/accounts"):
        if args.json:
            _print_json({k: acct[k] for k in ("owner", "height", "positions")})
            return 0
        rows = [
            [
                p["symbol"],
                p["size"],
                format_amount(p["open_notional"]),
                format_amount(p["unrealized_pnl"]),
                format_amount(p["realized_pnl"]),
                format_amount(p["funding_paid"]),
            ]
            for p in acct["positions"]
        ]
        title = f"Positions of {acct['owner']} at height {acct['height']}"
    columns = ["market", "size", "open notional", "unrealized PnL", "realized PnL", "funding paid"]
    print_table(title, columns, rows, right=columns[1:], empty="no open positions")
    return 0


def cmd_orders(args: argparse.Namespace) -> int:
    acct = _account(args)
    with _node_shape(args.rpc, "/v1/accounts"):
        if args.json:
            keys = ("owner", "height", "open_orders", "triggers", "cancel_after_height")
            _print_json({k: acct[k] for k in keys})
            return 0
        orders = acct["open_orders"]
        triggers = [_trigger_row(t) for t in acct["triggers"]]
        switch = _switch(acct["cancel_after_height"])
    # Only lots come with an order, so the market's lot size turns them into a size.
    by_id = {m.market_id: m for m in _markets(args)} if orders else {}
    with _node_shape(args.rpc, "/v1/accounts"):
        rows = []
        for o in orders:
            m = by_id.get(o["market"])
            if m is None:
                raise ValueError(f"an open order is in market {o['market']}, unknown here")
            rows.append(
                [
                    m.symbol,
                    o["side"] + (" (reduce only)" if o["reduce_only"] else ""),
                    o["price"],
                    m.size(o["size_lots"]),
                    m.size(o["remaining_lots"]),
                    str(o["client_id"]),
                    str(o["order_id"]),
                    str(o["height"]),
                ]
            )
        title = f"Open orders of {acct['owner']} at height {acct['height']}"
    columns = ["market", "side", "price", "size", "remaining", "client id", "order id", "height"]
    print_table(title, columns, rows, right=columns[2:], empty="no open orders")
    columns = ["market", "side", "fires", "trigger price", "then", "size", "client id",
               "trigger id", "height"]  # fmt: skip
    title = f"Untriggered orders of {acct['owner']}"
    print_table(title, columns, triggers, right=columns[5:], empty="no triggers")
    print_rows("Dead man's switch", [("scheduled cancel", switch)])
    return 0


def _trigger_row(t: dict[str, Any]) -> list[str]:
    """One untriggered order for people: which way the mark must move, and what it becomes."""
    rising = (t["side"] == "BUY") == (t["kind"] == "STOP")
    kind = t["kind"].lower().replace("_", "-")
    fires = f"{kind}: mark {'≥' if rising else '≤'}"
    then = f"limit {t['price']}" if t["order_type"] == "LIMIT" else "market"
    side = t["side"] + (" (reduce only)" if t["reduce_only"] else "")
    if t["attach"] != "NONE":
        side += f" (TP/SL of {t['attach'].lower()})"
    if t["dormant"]:
        then += " (after the parent's first fill)"
    return [t["symbol"], side, fires, t["trigger_price"], then, t["size"], str(t["client_id"]),
            str(t["trigger_id"]), str(t["height"])]  # fmt: skip


def cmd_book(args: argparse.Namespace) -> int:
    m = _find(_markets(args), args.market)
    book = get_object(args.rpc, f"/v1/book/{m.market_id}", {"depth": args.depth})
    if args.json:
        _print_json(book)
        return 0
    with _node_shape(args.rpc, "/v1/book"):
        rows = [
            [
                bid["size"] if bid else "",
                bid["price"] if bid else "",
                ask["price"] if ask else "",
                ask["size"] if ask else "",
            ]
            for bid, ask in zip_longest(book["bids"], book["asks"])
        ]
        title = f"{m.symbol} book at height {book['height']}, best {args.depth} levels a side"
    columns = ["bid size", "bid", "ask", "ask size"]
    print_table(title, columns, rows, right=columns, empty="no orders on either side")
    return 0


def cmd_trades(args: argparse.Namespace) -> int:
    m = _find(_markets(args), args.market)
    doc = get_object(args.rpc, f"/v1/trades/{m.market_id}", {"limit": args.limit})
    if args.json:
        _print_json(doc)
        return 0
    with _node_shape(args.rpc, "/v1/trades"):
        rows = [
            [
                str(t["height"]),
                str(t["trade_id"]),
                t["taker_side"] + (" (liquidation)" if t["liquidation"] else ""),
                t["price"],
                t["size"],
                t["taker"][:16],
                t["maker"][:16],
            ]
            for t in doc["trades"]
        ]
    columns = ["height", "trade id", "taker side", "price", "size", "taker", "maker"]
    title = f"{m.symbol}: last {len(rows)} trades, newest first"
    right = ("height", "trade id", "price", "size")
    print_table(title, columns, rows, right=right, empty="no trades yet")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = get_status(args.rpc)
    if args.json:
        _print_json(status)
        return 0
    rows = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in status.items()]
    print_rows(f"Node at {args.rpc}", rows)
    return 0


# --------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", help=f"wallet file (default: ${WALLET_ENV} or {DEFAULT_WALLET})")
    p.add_argument("--json", action="store_true", help="print one JSON object, not tables")


def _trading(p: argparse.ArgumentParser) -> None:
    _common(p)
    chain = p.add_argument_group("chain and node")
    chain.add_argument("--genesis", help="genesis.toml of the chain to sign for")
    chain.add_argument("--home", help=f"a node home whose genesis to use (or ${HOME_ENV})")
    chain.add_argument(
        "--rpc",
        help="node RPC URL, e.g. http://127.0.0.1:26657 (default: the node the files record, "
        "see below)",
    )
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
        help="expiry: the node's current height + BLOCKS (default %(default)s; needs a node, "
        "so with --dry-run give --rpc or --expiry-height)",
    )
    tx.add_argument(
        "--expiry-height", type=_u64, metavar="H", help="last block height that may include it"
    )
    tx.add_argument(
        "--nonce", type=_u64, help="replay nonce (default: time-based random, see docs/rpc.md)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also show the tx bytes")


def _reading(p: argparse.ArgumentParser, account: bool = False, markets: bool = False) -> None:
    """Flags of the read commands: a node, and which account or how to name markets."""
    p.add_argument("--json", action="store_true", help="print the node's JSON, not tables")
    p.add_argument("--rpc", help="node RPC URL (default: the node the files record, see below)")
    if account:
        p.add_argument("--file", help=f"wallet file (default: ${WALLET_ENV} or {DEFAULT_WALLET})")
        p.add_argument(
            "--account", type=_key_hex, help="public key hex to read (default: the wallet's)"
        )
    if markets:
        names = p.add_argument_group(
            "market names", "symbols resolve through this genesis if given, else the node's list"
        )
        names.add_argument("--genesis", help="genesis.toml of the chain")
        names.add_argument("--home", help=f"a node home whose genesis to use (or ${HOME_ENV})")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``wallet`` and its actions to the top-level parser."""
    wallet = sub.add_parser(
        "wallet",
        help="keys and trading from a wallet",
        epilog=NODE_RULE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wsub = wallet.add_subparsers(dest="wallet_command", metavar="ACTION")
    wallet.set_defaults(func=lambda args: print_help_of(wallet))

    def talks_to_a_node(name: str, help: str) -> argparse.ArgumentParser:
        """A subcommand that may talk to a node: its help ends with the rule choosing it."""
        return wsub.add_parser(
            name, help=help, epilog=NODE_RULE, formatter_class=argparse.RawDescriptionHelpFormatter
        )

    new = wsub.add_parser("new", help="create a wallet key file (mode 0600)")
    _common(new)
    new.add_argument(
        "--insecure", action="store_true", help="store the seed unencrypted (testnets only)"
    )
    new.set_defaults(func=cmd_new)

    address = wsub.add_parser("address", help="print the wallet's address (public key)")
    _common(address)
    address.set_defaults(func=cmd_address)

    place = talks_to_a_node("place", help="place an order, or a stop / take-profit trigger")
    _trading(place)
    place.add_argument("--market", required=True, help="symbol (BTC-PERP) or market id")
    place.add_argument("--side", required=True, choices=sorted(SIDES))
    place.add_argument(
        "--type",
        default="limit",
        choices=list(ORDER_KINDS),
        help="default %(default)s; a trigger becomes a limit (at --price) or a market order",
    )
    place.add_argument("--size", required=True, help="in base units, e.g. 0.25")
    place.add_argument("--price", help="limit price in quote per base unit, e.g. 60123.5")
    place.add_argument("--worst-price", help="market orders: the worst price to trade at")
    place.add_argument("--reduce-only", action="store_true", help="may only shrink a position")
    place.add_argument(
        "--client-id", type=_u64, help="order id for cancels (default: random 63-bit)"
    )
    triggers = place.add_argument_group("triggers", TRIGGER_HELP)
    triggers.add_argument("--trigger-price", metavar="P", help="mark price that fires it")
    triggers.add_argument("--trigger", choices=list(TRIGGER_KINDS), help="stop or take-profit")
    place.set_defaults(func=_with_node(cmd_place))

    modify = talks_to_a_node(
        "modify", help="change an open order's price and remaining size in one action"
    )
    _trading(modify)
    modify.add_argument("--market", required=True, help="symbol (BTC-PERP) or market id")
    modify.add_argument("--client-id", type=_u64, required=True, help="the order to change")
    modify.add_argument("--price", required=True, help="new limit price")
    modify.add_argument(
        "--size",
        required=True,
        help="new remaining size; the same price and a smaller size keep the order's place in "
        "the queue, anything else re-queues it as a new GTC order (it may trade)",
    )
    modify.add_argument(
        "--post-only",
        action="store_true",
        help="if re-queued, refuse (keeping the original) rather than cross the book",
    )
    modify.set_defaults(func=_with_node(cmd_modify))

    schedule = talks_to_a_node(
        "schedule-cancel",
        help="dead man's switch: cancel every open order and trigger after a height",
    )
    _trading(schedule)
    when = schedule.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--height",
        type=_u64,
        metavar="H",
        help="cancel in the first block above H (H at least the next block's height, at most "
        f"{MAX_SCHEDULE_AHEAD_BLOCKS:,} above it); a new schedule replaces the old",
    )
    when.add_argument(
        "--in-blocks",
        type=_bounded("--in-blocks", MAX_SCHEDULE_AHEAD_BLOCKS),
        metavar="N",
        help="H = the node's current height + N (allow the blocks it takes to be included)",
    )
    when.add_argument("--clear", action="store_true", help="remove the switch")
    schedule.set_defaults(func=_with_node(cmd_schedule_cancel))

    cancel = talks_to_a_node("cancel", help="cancel one open order or trigger by its client id")
    _trading(cancel)
    cancel.add_argument("--market", required=True)
    cancel.add_argument("--client-id", type=_u64, required=True)
    cancel.set_defaults(func=_with_node(cmd_cancel))

    cancel_all = talks_to_a_node(
        "cancel-all", help="cancel all open orders and triggers in a market"
    )
    _trading(cancel_all)
    cancel_all.add_argument("--market", required=True)
    cancel_all.set_defaults(func=_with_node(cmd_cancel_all))

    transfer = talks_to_a_node("transfer", help="move collateral to another account")
    _trading(transfer)
    transfer.add_argument("--to", type=_key_hex, required=True, help="recipient public key hex")
    transfer.add_argument("--amount", required=True, help="in quote currency, e.g. 100.5")
    transfer.set_defaults(func=_with_node(cmd_transfer))

    withdraw = talks_to_a_node("withdraw", help="take collateral out of the exchange")
    _trading(withdraw)
    withdraw.add_argument("--amount", required=True, help="in quote currency, e.g. 100.5")
    withdraw.add_argument(
        "--destination",
        type=_destination_hex,
        required=True,
        metavar="HEX",
        help=f"external address, 1..{limits.MAX_WITHDRAW_DESTINATION_BYTES} bytes as hex",
    )
    withdraw.set_defaults(func=_with_node(cmd_withdraw))

    balance = talks_to_a_node("balance", help="collateral, equity and margin of an account")
    _reading(balance, account=True)
    balance.set_defaults(func=_with_node(cmd_balance))

    positions = talks_to_a_node("positions", help="an account's open positions")
    _reading(positions, account=True)
    positions.set_defaults(func=_with_node(cmd_positions))

    orders = talks_to_a_node(
        "orders", help="an account's open orders, untriggered orders and dead man's switch"
    )
    _reading(orders, account=True, markets=True)
    orders.set_defaults(func=_with_node(cmd_orders))

    book = talks_to_a_node("book", help="order book of a market, best levels first")
    _reading(book, markets=True)
    book.add_argument("market", help="symbol (BTC-PERP) or market id")
    book.add_argument(
        "--depth",
        type=_bounded("--depth", MAX_BOOK_DEPTH),
        default=20,
        help=f"levels a side (default %(default)s, at most {MAX_BOOK_DEPTH})",
    )
    book.set_defaults(func=_with_node(cmd_book))

    trades = talks_to_a_node("trades", help="recent trades of a market, newest first")
    _reading(trades, markets=True)
    trades.add_argument("market", help="symbol (BTC-PERP) or market id")
    trades.add_argument(
        "--limit",
        type=_bounded("--limit", MAX_TRADES_LIMIT),
        default=50,
        help=f"how many (default %(default)s, at most {MAX_TRADES_LIMIT})",
    )
    trades.set_defaults(func=_with_node(cmd_trades))

    status = talks_to_a_node("status", help="the node's height, view, peers and chain")
    _reading(status)
    status.set_defaults(func=_with_node(cmd_status))
