"""``lockstep wallet`` run as a real subprocess: exact transactions, key file policy, RPC use.

Against a node, the wallet talks to the real RPC app (node/rpc.py on hypercorn) over a socket;
only the answers behind it are fixed here, until the daemon lands.
"""

from __future__ import annotations

import json
import os
import queue
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from lockstep.cli.main import build_parser
from lockstep.cli.main import main as cli_main
from lockstep.cli.rpc_client import DEFAULT_RPC_URL, RPCError, get_json, get_status, submit
from lockstep.cli.wallet import choose_node
from lockstep.consensus.actions import (
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
    Side,
    SignedTx,
    TimeInForce,
    Transfer,
    TriggerKind,
    Withdraw,
    decode_and_verify_tx,
    decode_tx,
)
from lockstep.consensus.codec import CodecError
from lockstep.consensus.crypto import Signer
from lockstep.consensus.genesis import Genesis
from lockstep.node.config import DEFAULT_RPC_PORT, NodeConfig
from lockstep.node.genesis_file import genesis_to_toml
from lockstep.node.home import init_home
from lockstep.node.keys import save_wallet, wallet_public_key
from lockstep.node.rpc import Admission, build_rpc_app
from lockstep.node.streams import StreamHub, Subscriber
from lockstep.testnet.generate import generate_network

from tests.conftest import make_genesis, seed_of
from tests.localnet import local_network, one_network_at_a_time, wait_for
from tests.wsclient import WsClient

PASSPHRASE_ENV = "LOCKSTEP_WALLET_PASSPHRASE"
TRADER = Signer(seed_of("cli-trader"))
OTHER = Signer(seed_of("cli-other"))


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOCKSTEP_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "lockstep.cli.main", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def run_json(*argv: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = run(*argv, "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Genesis, Path]:
    genesis = make_genesis()[0]
    path = tmp_path / "genesis.toml"
    path.write_text(genesis_to_toml(genesis))
    return genesis, path


@pytest.fixture
def wallet(tmp_path: Path) -> Path:
    path = tmp_path / "trader.json"
    save_wallet(path, TRADER, None)
    return path


def expected(tx: SignedTx, genesis: Genesis) -> dict[str, Any]:
    return {"tx_id": tx.tx_id(genesis.chain_id).hex(), "tx_hex": tx.encode().hex()}


def test_place_limit_exact(chain: tuple[Genesis, Path], wallet: Path) -> None:
    genesis, gpath = chain
    doc = run_json(
        "wallet", "place", "--file", str(wallet), "--genesis", str(gpath),
        "--market", "BTC-PERP", "--side", "buy", "--size", "0.25", "--price", "60123.5",
        "--client-id", "42", "--nonce", "1000", "--expiry-height", "77", "--dry-run",
    )  # fmt: skip
    place = PlaceOrder(0, Side.BUY, OrderType.LIMIT, TimeInForce.GTC, False, 601_235, 250, 42)
    tx = Order(TRADER.public_key, 1000, 77, place).sign(TRADER, genesis.chain_id)
    assert doc == {
        "chain_id": genesis.chain_id.hex(),
        **expected(tx, genesis),
        "tx": {
            "type": "SignedTx",
            "body": {
                "type": "Order",
                "signer": TRADER.public_key.hex(),
                "nonce": 1000,
                "expiry_height": 77,
                "place": {
                    "type": "PlaceOrder",
                    "market": 0,
                    "side": "BUY",
                    "order_type": "LIMIT",
                    "time_in_force": "GTC",
                    "reduce_only": False,
                    "price": 601_235,
                    "size": 250,
                    "client_id": 42,
                },
            },
            "signature": tx.signature.hex(),
        },
        "human": {
            "market": "BTC-PERP",
            "price": "60123.5",
            "size": "0.250",
            "notional": "15030.875000",
        },
        "submitted": None,
    }
    assert decode_tx(bytes.fromhex(doc["tx_hex"])).verify(genesis.chain_id).hex() == doc["tx_id"]


@pytest.mark.parametrize(
    ("kind", "price_args", "order_type", "tif"),
    [
        ("ioc", ["--price", "3000.01"], OrderType.LIMIT, TimeInForce.IOC),
        ("post-only", ["--price", "3000.01"], OrderType.LIMIT, TimeInForce.POST_ONLY),
        ("market", ["--worst-price", "3000.01"], OrderType.MARKET, TimeInForce.IOC),
    ],
)
def test_place_kinds_exact(
    chain: tuple[Genesis, Path],
    wallet: Path,
    kind: str,
    price_args: list[str],
    order_type: OrderType,
    tif: TimeInForce,
) -> None:
    genesis, gpath = chain
    doc = run_json(
        "wallet", "place", "--file", str(wallet), "--genesis", str(gpath), "--market", "eth-perp",
        "--side", "sell", "--type", kind, "--size", "1.5", *price_args, "--reduce-only",
        "--client-id", "9", "--nonce", "5", "--expiry-height", "10", "--dry-run",
    )  # fmt: skip
    place = PlaceOrder(1, Side.SELL, order_type, tif, True, 300_001, 150, 9)
    tx = Order(TRADER.public_key, 5, 10, place).sign(TRADER, genesis.chain_id)
    assert {k: doc[k] for k in ("tx_id", "tx_hex")} == expected(tx, genesis)
    assert doc["tx"]["body"]["place"]["order_type"] == order_type.name
    assert doc["tx"]["body"]["place"]["time_in_force"] == tif.name


def test_cancel_cancel_all_transfer_exact(chain: tuple[Genesis, Path], wallet: Path) -> None:
    genesis, gpath = chain
    common = ["--file", str(wallet), "--genesis", str(gpath), "--nonce", "3"]
    common += ["--expiry-height", "20", "--dry-run"]
    doc = run_json("wallet", "cancel", *common, "--market", "BTC-PERP", "--client-id", "42")
    tx = Cancel(TRADER.public_key, 3, 20, CancelOrder(0, 42)).sign(TRADER, genesis.chain_id)
    assert {k: doc[k] for k in ("tx_id", "tx_hex")} == expected(tx, genesis)
    assert doc["tx"]["body"]["cancel"] == {"type": "CancelOrder", "market": 0, "client_id": 42}

    doc = run_json("wallet", "cancel-all", *common, "--market", "1")
    tx = Cancel(TRADER.public_key, 3, 20, CancelAll(1)).sign(TRADER, genesis.chain_id)
    assert {k: doc[k] for k in ("tx_id", "tx_hex")} == expected(tx, genesis)

    to = OTHER.public_key.hex()
    doc = run_json("wallet", "transfer", *common, "--to", to, "--amount", "100.5")
    tx = Transfer(TRADER.public_key, 3, 20, OTHER.public_key, 100_500_000).sign(
        TRADER, genesis.chain_id
    )
    assert {k: doc[k] for k in ("tx_id", "tx_hex")} == expected(tx, genesis)
    assert doc["human"] == {"amount": "100.500000"}


def signing(wallet: Path, gpath: Path, nonce: int = 6, expiry: int = 40) -> list[str]:
    """The flags of an offline, reproducible signature: wallet, chain, nonce, expiry."""
    return ["--file", str(wallet), "--genesis", str(gpath), "--nonce", str(nonce),
            "--expiry-height", str(expiry), "--dry-run"]  # fmt: skip


def test_place_trigger_exact(chain: tuple[Genesis, Path], wallet: Path, cli: Cli) -> None:
    genesis, gpath = chain
    doc = call_json(
        cli, "wallet", "place", *signing(wallet, gpath), "--market", "BTC-PERP", "--side", "sell",
        "--size", "0.25", "--price", "58900.5", "--trigger-price", "59000", "--trigger", "stop",
        "--reduce-only", "--client-id", "11",
    )  # fmt: skip
    stop = PlaceTrigger(0, Side.SELL, TriggerKind.STOP, OrderType.LIMIT, True, 590_000, 589_005,
                        250, 11)  # fmt: skip
    tx = Batch(TRADER.public_key, 6, 40, (stop,)).sign(TRADER, genesis.chain_id)
    assert {k: doc[k] for k in ("tx_id", "tx_hex")} == expected(tx, genesis)
    assert doc["tx"]["body"]["type"] == "Batch"
    assert doc["tx"]["body"]["batch"] == [
        {
            "type": "PlaceTrigger",
            "market": 0,
            "side": "SELL",
            "kind": "STOP",
            "order_type": "LIMIT",
            "reduce_only": True,
            "trigger_price": 590_000,
            "price": 589_005,
            "size": 250,
            "client_id": 11,
            "attach": "NONE",
            "parent_client_id": 0,
        }
    ]
    assert doc["human"] == {
        "market": "BTC-PERP",
        "trigger_price": "59000.0",
        "price": "58900.5",
        "size": "0.250",
    }

    doc = call_json(
        cli, "wallet", "place", *signing(wallet, gpath), "--market", "1", "--side", "buy",
        "--type", "market", "--size", "2", "--trigger-price", "2500", "--trigger", "take-profit",
        "--client-id", "12",
    )  # fmt: skip
    tp = PlaceTrigger(1, Side.BUY, TriggerKind.TAKE_PROFIT, OrderType.MARKET, False, 250_000, 0,
                      200, 12)  # fmt: skip
    tx = Batch(TRADER.public_key, 6, 40, (tp,)).sign(TRADER, genesis.chain_id)
    assert {k: doc[k] for k in ("tx_id", "tx_hex")} == expected(tx, genesis)
    assert doc["human"]["price"] == "market, within 5% of the mark"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--price", "1", "--trigger-price", "2"], "needs both --trigger-price and --trigger"),
        (["--price", "1", "--trigger", "stop"], "needs both --trigger-price and --trigger"),
        (["--type", "ioc", "--price", "1", "--trigger-price", "2", "--trigger", "stop"],
         "a trigger becomes a limit or a market order, not 'ioc'"),
        (["--type", "market", "--worst-price", "1", "--trigger-price", "2", "--trigger", "stop"],
         "a trigger takes no --worst-price"),
        (["--type", "market", "--price", "1", "--trigger-price", "2", "--trigger", "stop"],
         "a market trigger takes no --price"),
        (["--trigger-price", "2", "--trigger", "stop"], "a limit trigger needs --price"),
    ],
)  # fmt: skip
def test_bad_triggers_refused(
    chain: tuple[Genesis, Path], wallet: Path, cli: Cli, args: list[str], message: str
) -> None:
    code, out, err = cli(
        "wallet", "place", *signing(wallet, chain[1]), "--market", "0", "--side", "buy",
        "--size", "1", *args,
    )  # fmt: skip
    assert (code, out) == (1, "") and message in err


def test_modify_and_schedule_cancel_exact(
    chain: tuple[Genesis, Path], wallet: Path, cli: Cli
) -> None:
    genesis, gpath = chain

    def signed(*actions: Any) -> dict[str, Any]:
        return expected(Batch(TRADER.public_key, 6, 40, actions).sign(TRADER, genesis.chain_id),
                        genesis)  # fmt: skip

    doc = call_json(
        cli, "wallet", "modify", *signing(wallet, gpath), "--market", "BTC-PERP",
        "--client-id", "42", "--price", "60100.1", "--size", "0.5", "--post-only",
    )  # fmt: skip
    assert {k: doc[k] for k in ("tx_id", "tx_hex")} == signed(
        ModifyOrder(0, 42, 601_001, 500, True)
    )
    assert doc["tx"]["body"]["batch"][0] == {
        "type": "ModifyOrder",
        "market": 0,
        "client_id": 42,
        "price": 601_001,
        "size": 500,
        "post_only": True,
    }
    assert doc["human"] == {"market": "BTC-PERP", "price": "60100.1", "remaining_size": "0.500"}

    schedule = ["wallet", "schedule-cancel", *signing(wallet, gpath)]
    doc = call_json(cli, *schedule, "--height", "2000")
    assert {k: doc[k] for k in ("tx_id", "tx_hex")} == signed(ScheduleCancel(2000))
    assert doc["tx"]["body"]["batch"] == [{"type": "ScheduleCancel", "height": 2000}]
    assert doc["human"] == {"cancel_after_height": "2000"}
    doc = call_json(cli, *schedule, "--clear")
    assert {k: doc[k] for k in ("tx_id", "tx_hex")} == signed(ScheduleCancel(0))
    assert doc["human"] == {"cancel_after_height": "cleared"}

    code, out, err = cli(*schedule, "--in-blocks", "30")
    assert (code, out) == (1, "") and "--in-blocks needs the node's current height" in err
    code, _, err = cli(*schedule, "--height", "5", "--clear")
    assert code == 2 and "not allowed with argument" in err
    code, _, err = cli(*schedule, "--in-blocks", "0")
    assert code == 2 and "--in-blocks must be in 1..1000000" in err


def test_new_actions_submitted(
    chain: tuple[Genesis, Path], wallet: Path, node: Served, cli: Cli
) -> None:
    """Against a node the height comes from it: --in-blocks counts from it, as --expires-in."""
    own = ["--file", str(wallet), "--genesis", str(chain[1]), "--rpc", node.url]
    doc = call_json(cli, "wallet", "schedule-cancel", *own, "--in-blocks", "30", "--wait")
    assert doc["submitted"]["status"] == "committed"
    body = decode_tx(node.answers.submitted[-1]).body
    assert body.actions() == (ScheduleCancel(1234 + 30),) and body.expiry_height == 1234 + 100
    doc = call_json(
        cli, "wallet", "modify", *own, "--market", "0", "--client-id", "1", "--price", "1",
        "--size", "0.001",
    )  # fmt: skip
    assert doc["submitted"] == {"tx_id": doc["tx_id"], "status": "accepted"}


def test_genesis_from_home(tmp_path: Path, chain: tuple[Genesis, Path], wallet: Path) -> None:
    genesis, gpath = chain
    init_home(tmp_path / "home", gpath, "n0")
    doc = run_json(
        "wallet", "cancel-all", "--file", str(wallet), "--home", str(tmp_path / "home"),
        "--market", "BTC-PERP", "--expiry-height", "9", "--dry-run",
    )  # fmt: skip
    assert doc["chain_id"] == genesis.chain_id.hex()
    # Without --nonce: time-based, random low bits, below 2^63.
    assert 2**60 < doc["tx"]["body"]["nonce"] < 2**63


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--price", "60123.55"], "not a multiple of the tick size 0.1 for BTC-PERP"),
        (["--worst-price", "1"], "--worst-price is for market orders"),
        ([], "a limit order needs --price"),
        (["--price", "1", "--type", "market"], "takes --worst-price"),
        (["--price", "1", "--market", "DOGE-PERP"], "unknown market 'DOGE-PERP'"),
    ],
)
def test_bad_orders_refused(
    chain: tuple[Genesis, Path], wallet: Path, args: list[str], message: str
) -> None:
    market = [] if "--market" in args else ["--market", "BTC-PERP"]
    out = run(
        "wallet", "place", "--file", str(wallet), "--genesis", str(chain[1]), *market,
        "--side", "buy", "--size", "1", "--expiry-height", "5", "--dry-run", *args,
    )  # fmt: skip
    assert out.returncode == 1
    assert message in out.stderr
    assert out.stdout == ""


def test_needs_expiry_or_rpc_and_a_chain(chain: tuple[Genesis, Path], wallet: Path) -> None:
    base = ["wallet", "cancel-all", "--file", str(wallet), "--market", "0"]
    out = run(*base, "--genesis", str(chain[1]), "--dry-run")
    assert out.returncode == 1 and "--expiry-height is required without --rpc" in out.stderr
    out = run(*base, "--expiry-height", "5", "--dry-run")
    assert out.returncode == 1 and "give --genesis PATH" in out.stderr
    # Without --rpc or --dry-run it submits to the node its files name, and says which when
    # that node does not answer (the default rule: test_default_node_rule below).
    home = closed_home(chain[1].parent / "home", chain[1])
    out = run(*base, "--genesis", str(chain[1]), "--expiry-height", "5",
              env={"LOCKSTEP_HOME": str(home)})  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "http://127.0.0.1:9/v1/status: cannot reach the node" in out.stderr
    assert f"(the node of $LOCKSTEP_HOME {home}, as no --rpc was given); give --rpc URL" in (
        out.stderr
    )


def closed_home(home: Path, genesis: Path, rpc_port: int = 9, host: str = "127.0.0.1") -> Path:
    """A node home whose config's RPC listener is ``host:rpc_port`` (9: nothing answers)."""
    init_home(home, genesis, "node0", config=NodeConfig().with_ports(host, 7, rpc_port, 11))
    return home


def test_new_insecure_wallet(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "w.json"
    doc = run_json("wallet", "new", "--insecure", "--file", str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert doc == {"address": doc["address"], "file": str(path), "encrypted": False}
    assert run_json("wallet", "address", "--file", str(path)) == {"address": doc["address"]}
    out = run("wallet", "new", "--insecure", "--file", str(path))
    assert out.returncode == 1 and "refusing to overwrite" in out.stderr


def test_world_readable_wallet_refused(chain: tuple[Genesis, Path], wallet: Path) -> None:
    wallet.chmod(0o644)
    out = run(
        "wallet", "cancel-all", "--file", str(wallet), "--genesis", str(chain[1]),
        "--market", "0", "--expiry-height", "5", "--dry-run",
    )  # fmt: skip
    assert out.returncode == 1
    assert "permissions 0644 are too open" in out.stderr
    assert run("wallet", "address", "--file", str(wallet)).returncode == 1


def test_encrypted_wallet_passphrase(tmp_path: Path, chain: tuple[Genesis, Path]) -> None:
    # Three Argon2id MODERATE derivations (~0.5 s each): create, unlock, wrong passphrase.
    path = tmp_path / "enc.json"
    env = {PASSPHRASE_ENV: "correct horse battery staple"}
    doc = run_json("wallet", "new", "--file", str(path), env=env)
    assert doc["encrypted"] is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["kind"] == "lockstep-wallet"
    args = ["wallet", "cancel-all", "--file", str(path), "--genesis", str(chain[1])]
    args += ["--market", "0", "--expiry-height", "5", "--dry-run"]
    signed = run_json(*args, env=env)
    assert signed["tx"]["body"]["signer"] == doc["address"]
    out = run(*args, env={PASSPHRASE_ENV: "Tr0ub4dor&3"})
    assert out.returncode == 1
    assert "wrong passphrase" in out.stderr


# --------------------------------------------------------------------------- against a node


OWNER_HEX = TRADER.public_key.hex()
ACCOUNT = {
    "owner": OWNER_HEX,
    "height": 1234,
    "collateral": 1_000_000_000_000,
    "collateral_usd": "1000000.000000",
    "equity": 1_000_012_500_000,
    "initial_margin": 751_000_000,
    "maintenance_margin": 375_500_000,
    "positions": [
        {
            "market": 0,
            "symbol": "BTC-PERP",
            "size_lots": -250,
            "size": "-0.250",
            "open_notional": -15_030_875_000,
            "realized_pnl": 0,
            "unrealized_pnl": 12_500_000,
            "funding_paid": -1_200,
        }
    ],
    "open_orders": [
        {
            "order_id": 91,
            "market": 1,
            "symbol": "ETH-PERP",
            "client_id": 42,
            "side": "SELL",
            "price_ticks": 301_000,
            "price": "3010.00",
            "size_lots": 150,
            "remaining_lots": 100,
            "reduce_only": True,
            "height": 1230,
        }
    ],
    "triggers": [
        {
            "trigger_id": 95,
            "market": 0,
            "symbol": "BTC-PERP",
            "client_id": 43,
            "side": "BUY",
            "kind": "STOP",
            "order_type": "LIMIT",
            "trigger_price_ticks": 610_000,
            "trigger_price": "61000.0",
            "price_ticks": 610_100,
            "price": "61010.0",
            "size_lots": 250,
            "size": "0.250",
            "reduce_only": True,
            "attach": "NONE",
            "dormant": False,
            "height": 1231,
        }
    ],
    "cancel_after_height": 1300,
}
"""An account as node/views.py ``account_json`` shapes it (checked by test_answers_match_views)."""


def level(price_ticks: int, size_lots: int, price: str, size: str) -> dict[str, Any]:
    return {"price_ticks": price_ticks, "size_lots": size_lots, "price": price, "size": size}


BOOK = {
    "market": 0,
    "height": 1234,
    "bids": [level(601_230, 1_500, "60123.0", "1.500"), level(601_220, 250, "60122.0", "0.250")],
    "asks": [level(601_240, 800, "60124.0", "0.800")],
}
TRADE = {
    "trade_id": 881,
    "height": 1234,
    "market": 0,
    "price_ticks": 601_235,
    "size_lots": 250,
    "price": "60123.5",
    "size": "0.250",
    "taker_side": "BUY",
    "taker": OTHER.public_key.hex(),
    "maker": OWNER_HEX,
    "maker_order_id": 90,
    "taker_fee": 7_516,
    "maker_fee": 3_007,
    "liquidation": False,
}


class ChainAnswers:
    """The node side behind the real RPC app (node/rpc.py): verifies and records submissions.

    Reads answer fixed documents shaped as node/views.py and node/daemon.py build them; what
    was asked (depth, limit) is recorded so tests can check the wallet passed it on.
    """

    def __init__(self, genesis: Genesis) -> None:
        self.hub = StreamHub(lambda stream: None)
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.height = 1234
        self.submitted: list[bytes] = []
        self.accounts: dict[bytes, dict[str, Any]] = {TRADER.public_key: ACCOUNT}
        self.asked: list[tuple[str, int, int]] = []

    async def subscribe(self, stream: str) -> Subscriber:
        return self.hub.subscribe(stream)

    async def submit(self, raw: bytes) -> Admission:
        try:
            tx, tx_id = decode_and_verify_tx(raw, self.chain_id)
        except CodecError as e:
            return Admission(None, "MALFORMED", 1, str(e))
        self.submitted.append(raw)
        if tx.body.nonce == 666:
            return Admission(tx_id, "INSUFFICIENT_MARGIN", 15, "equity below initial margin")
        return Admission(tx_id, "OK", 0)

    async def submit_many(self, raws: list[bytes]) -> list[Admission]:
        return [await self.submit(r) for r in raws]

    async def wait_committed(self, tx_id: bytes, timeout_s: float) -> dict[str, Any] | None:
        return {"height": self.height + 1, "index": 0, "reason": "OK", "fills": []}

    def status(self) -> dict[str, Any]:
        return {"chain_id": self.chain_id.hex(), "height": self.height, "peers": 3}

    async def markets(self) -> list[dict[str, Any]]:
        # The daemon's shape (node/daemon.py ``markets``).
        return [
            {
                "market_id": m.market_id,
                "symbol": m.symbol,
                "tick_size": str(m.tick_size),
                "lot_size": str(m.lot_size),
                "book": None,
            }
            for m in self.genesis.markets
        ]

    async def book(self, market: int, depth: int) -> dict[str, Any] | None:
        self.asked.append(("book", market, depth))
        if market == 0:
            return BOOK
        if market == 1:
            return {"market": 1, "height": self.height, "bids": [], "asks": []}
        return None

    async def trades(self, market: int, limit: int) -> list[dict[str, Any]] | None:
        self.asked.append(("trades", market, limit))
        if market == 0:
            return [TRADE, {**TRADE, "trade_id": 880, "liquidation": True}]
        return [] if market == 1 else None

    async def account(self, owner: bytes) -> dict[str, Any] | None:
        return self.accounts.get(owner)

    async def block(self, height: int) -> dict[str, Any] | None:
        return None

    async def action(self, tx_id: bytes) -> dict[str, Any] | None:
        return None

    async def actions(self, tx_ids: list[bytes]) -> list[dict[str, Any] | None]:
        return [None for _ in tx_ids]

    async def state_roots(self, first: int, last: int) -> list[dict[str, Any]]:
        return []

    async def ledger_totals(self) -> dict[str, Any]:
        return {}

    def admin_status(self) -> dict[str, Any]:
        return {}


@dataclass
class Served:
    answers: ChainAnswers
    url: str


@pytest.fixture
def node(chain: tuple[Genesis, Path]) -> Iterator[Served]:
    """The real RPC app on hypercorn's trio worker, in a background thread."""
    answers = ChainAnswers(chain[0])
    ready: queue.Queue[tuple[str, trio.lowlevel.TrioToken, trio.Event]] = queue.Queue()

    async def main() -> None:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(serve, build_rpc_app(answers), config, shutdown_trigger=stop.wait)
            )
            ready.put((binds[0], trio.lowlevel.current_trio_token(), stop))

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    url, token, stop = ready.get(timeout=10)
    yield Served(answers, url)
    trio.from_thread.run_sync(stop.set, trio_token=token)
    thread.join(timeout=10)


def test_submit_to_node(chain: tuple[Genesis, Path], wallet: Path, node: Served) -> None:
    args = ["wallet", "cancel-all", "--file", str(wallet), "--genesis", str(chain[1])]
    args += ["--market", "0", "--rpc", node.url, "--expires-in", "50"]
    doc = run_json(*args)
    assert doc["tx"]["body"]["expiry_height"] == 1234 + 50
    assert doc["submitted"] == {"tx_id": doc["tx_id"], "status": "accepted"}
    assert node.answers.submitted[-1].hex() == doc["tx_hex"]

    doc = run_json(*args, "--wait")
    assert doc["submitted"] == {
        "tx_id": doc["tx_id"],
        "status": "committed",
        "result": {"height": 1235, "index": 0, "reason": "OK", "fills": []},
    }

    out = run(*args, "--nonce", "666")
    assert out.returncode == 1
    assert "(422): INSUFFICIENT_MARGIN: equity below initial margin (tx " in out.stderr

    dry = run_json(*args, "--dry-run")
    assert dry["submitted"] is None and len(node.answers.submitted) == 3


def test_refuses_node_on_another_chain(
    chain: tuple[Genesis, Path], wallet: Path, node: Served
) -> None:
    node.answers.chain_id = bytes(32)
    out = run(
        "wallet", "cancel-all", "--file", str(wallet), "--genesis", str(chain[1]),
        "--market", "0", "--rpc", node.url,
    )  # fmt: skip
    assert out.returncode == 1
    assert "refusing to sign for it" in out.stderr
    assert node.answers.submitted == []


def test_rpc_client_reads_and_errors(node: Served) -> None:
    assert get_json(node.url, "/v1/status")["height"] == 1234
    assert [m["symbol"] for m in get_json(node.url + "/", "v1/markets")["markets"]] == [
        "BTC-PERP",
        "ETH-PERP",
    ]
    with pytest.raises(RPCError) as e:
        get_json(node.url, "/v1/book/7")
    assert (e.value.status, e.value.reason) == (404, "UNKNOWN_MARKET")
    with pytest.raises(RPCError) as e:
        submit(node.url, b"\x00not cbor")
    assert (e.value.status, e.value.reason) == (400, "MALFORMED")
    with pytest.raises(RPCError, match="cannot reach the node"):
        get_status("http://127.0.0.1:9")


def test_node_init_cli(tmp_path: Path, chain: tuple[Genesis, Path]) -> None:
    home = tmp_path / "home"
    doc = run_json("node", "init", "--home", str(home), "--genesis", str(chain[1]),
                   "--moniker", "n1")  # fmt: skip
    assert doc["created_key"] and doc["copied_genesis"]
    assert doc["chain_id"] == chain[0].chain_id.hex()
    again = run_json("node", "init", "--home", str(home))
    assert again["validator_public_key"] == doc["validator_public_key"]
    assert not again["created_key"]


def test_human_output_and_help(chain: tuple[Genesis, Path], wallet: Path) -> None:
    out = run(
        "wallet", "place", "--file", str(wallet), "--genesis", str(chain[1]), "--market", "0",
        "--side", "sell", "--size", "0.25", "--price", "60123.5", "--expiry-height", "9",
        "--dry-run",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for text in ("Order on test-chain", "60123.5", "0.250", "SELL", "no (dry run)"):
        assert text in out.stdout
    assert TRADER.public_key.hex() in out.stdout  # one line, not folded, when piped
    group = run("wallet")
    assert group.returncode == 2
    assert "cancel-all" in group.stdout and "transfer" in group.stdout


# --------------------------------------------------------------------------- reads and withdraw


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``lockstep`` in this process: the same ``main`` as ``run`` without an interpreter start
    (about a second each), so the read commands can be covered flag by flag and stay fast."""
    for name in [k for k in os.environ if k.startswith("LOCKSTEP_")]:
        monkeypatch.delenv(name)

    def call(*argv: str) -> tuple[int, str, str]:
        try:
            code = cli_main(list(argv))
        except SystemExit as e:  # argparse refusals
            code = int(e.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def call_json(cli: Cli, *argv: str) -> Any:
    code, out, err = cli(*argv, "--json")
    assert (code, err) == (0, "")
    return json.loads(out)


def test_withdraw_exact(chain: tuple[Genesis, Path], wallet: Path, cli: Cli) -> None:
    genesis, gpath = chain
    common = ["wallet", "withdraw", "--file", str(wallet), "--genesis", str(gpath)]
    common += ["--nonce", "4", "--expiry-height", "30", "--dry-run"]
    doc = call_json(cli, *common, "--amount", "250.25", "--destination", "00ff" * 10)
    tx = Withdraw(TRADER.public_key, 4, 30, 250_250_000, bytes.fromhex("00ff" * 10)).sign(
        TRADER, genesis.chain_id
    )
    assert {k: doc[k] for k in ("tx_id", "tx_hex")} == expected(tx, genesis)
    assert doc["tx"]["body"]["destination"] == "00ff" * 10
    assert doc["human"] == {"amount": "250.250000"}
    for bad, message in [("zz", "expected hex bytes"), ("", "expected 1..64 bytes, got 0")]:
        code, out, err = cli(*common, "--amount", "1", "--destination", bad)
        assert code == 2 and message in err and out == ""
    code, _, err = cli(*common, "--amount", "0", "--destination", "ab")
    assert code == 1 and "lockstep: error:" in err


def test_withdraw_submitted(
    chain: tuple[Genesis, Path], wallet: Path, node: Served, cli: Cli
) -> None:
    doc = call_json(
        cli, "wallet", "withdraw", "--file", str(wallet), "--genesis", str(chain[1]),
        "--rpc", node.url, "--amount", "1", "--destination", "ab",
    )  # fmt: skip
    assert doc["submitted"] == {"tx_id": doc["tx_id"], "status": "accepted"}
    assert decode_tx(node.answers.submitted[-1]).body.expiry_height == 1234 + 100


def test_balance_positions_orders_json(wallet: Path, node: Served, cli: Cli) -> None:
    own = ["--file", str(wallet), "--rpc", node.url]
    lists = ("positions", "open_orders", "triggers")
    scalars = {k: v for k, v in ACCOUNT.items() if k not in lists}
    assert call_json(cli, "wallet", "balance", *own) == scalars
    assert call_json(cli, "wallet", "positions", *own) == {
        "owner": OWNER_HEX,
        "height": 1234,
        "positions": ACCOUNT["positions"],
    }
    assert call_json(cli, "wallet", "orders", *own) == {
        "owner": OWNER_HEX,
        "height": 1234,
        "open_orders": ACCOUNT["open_orders"],
        "triggers": ACCOUNT["triggers"],
        "cancel_after_height": 1300,
    }
    # --account reads anyone's account, no wallet file needed.
    by_key = ["--account", OWNER_HEX, "--rpc", node.url, "--file", "/nonexistent"]
    assert call_json(cli, "wallet", "balance", *by_key) == scalars


def test_balance_positions_orders_tables(
    chain: tuple[Genesis, Path], wallet: Path, node: Served, cli: Cli
) -> None:
    own = ["--file", str(wallet), "--rpc", node.url]
    code, out, err = cli("wallet", "balance", *own)
    assert (code, err) == (0, "")
    for text in (OWNER_HEX, "1000000.000000", "1000012.500000", "751.000000", "375.500000"):
        assert text in out
    # free = min(collateral, equity - initial margin) = 1000012.5 - 751
    assert "free to withdraw" in out and "999261.500000" in out
    assert "in block 1301 (the first above 1300)" in out

    code, out, err = cli("wallet", "positions", *own)
    assert (code, err) == (0, "")
    for text in ("BTC-PERP", "-0.250", "-15030.875000", "12.500000", "-0.001200"):
        assert text in out

    # Lot sizes come from the node's /v1/markets, or from a genesis when one is named.
    for extra in ([], ["--genesis", str(chain[1])]):
        code, out, err = cli("wallet", "orders", *own, *extra)
        assert (code, err) == (0, "")
        for text in ("ETH-PERP", "SELL (reduce only)", "3010.00", "1.50", "1.00", "42", "91"):
            assert text in out
        for text in ("stop: mark ≥", "61000.0", "limit 61010.0", "0.250", "43", "95", "1301"):
            assert text in out

    empty = {"positions": [], "open_orders": [], "triggers": [], "cancel_after_height": None}
    node.answers.accounts[TRADER.public_key] = {**ACCOUNT, **empty}
    assert "no open positions" in cli("wallet", "positions", *own)[1]
    out = cli("wallet", "orders", *own)[1]
    assert "no open orders" in out and "no triggers" in out
    assert re.search(r"scheduled cancel\s*│\s*none", out), out


def test_book_and_trades(chain: tuple[Genesis, Path], node: Served, cli: Cli) -> None:
    assert call_json(cli, "wallet", "book", "btc-perp", "--rpc", node.url) == BOOK
    assert call_json(cli, "wallet", "trades", "0", "--rpc", node.url, "--limit", "7") == {
        "trades": [TRADE, {**TRADE, "trade_id": 880, "liquidation": True}]
    }
    code, out, err = cli(
        "wallet", "book", "BTC-PERP", "--rpc", node.url, "--depth", "3", "--genesis", str(chain[1])
    )
    assert (code, err) == (0, "")
    for text in ("BTC-PERP book at height 1234", "60123.0", "1.500", "60124.0", "0.800"):
        assert text in out
    code, out, err = cli("wallet", "trades", "BTC-PERP", "--rpc", node.url)
    assert (code, err) == (0, "")
    for text in ("60123.5", "0.250", "BUY (liquidation)", OTHER.public_key.hex()[:16]):
        assert text in out
    assert node.answers.asked == [
        ("book", 0, 20),
        ("trades", 0, 7),
        ("book", 0, 3),
        ("trades", 0, 50),
    ]
    assert "no orders on either side" in cli("wallet", "book", "ETH-PERP", "--rpc", node.url)[1]
    assert "no trades yet" in cli("wallet", "trades", "1", "--rpc", node.url)[1]


def test_status(node: Served, cli: Cli) -> None:
    doc = call_json(cli, "wallet", "status", "--rpc", node.url)
    assert doc == {"chain_id": node.answers.chain_id.hex(), "height": 1234, "peers": 3}
    code, out, _ = cli("wallet", "status", "--rpc", node.url)
    assert code == 0 and f"Node at {node.url}" in out and node.answers.chain_id.hex() in out


def test_read_errors(chain: tuple[Genesis, Path], wallet: Path, node: Served, cli: Cli) -> None:
    def error(*argv: str) -> str:
        code, out, err = cli(*argv)
        assert (code, out) == (1, ""), err
        assert err.startswith("lockstep: error: ") and err.count("\n") == 1, err
        return err

    stranger = OTHER.public_key.hex()
    assert f"no account {stranger} on the chain of {node.url}" in error(
        "wallet", "balance", "--account", stranger, "--rpc", node.url
    )
    assert "no wallet at /nonexistent: give --file PATH, or --account HEX" in error(
        "wallet", "positions", "--file", "/nonexistent", "--rpc", node.url
    )
    assert "unknown market 'DOGE-PERP'; this chain has BTC-PERP, ETH-PERP" in error(
        "wallet", "book", "DOGE-PERP", "--rpc", node.url
    )
    assert "cannot reach the node" in error("wallet", "status", "--rpc", "http://127.0.0.1:9")
    assert "cannot reach the node" in error("wallet", "trades", "0", "--rpc", "http://127.0.0.1:9")
    node.answers.accounts[TRADER.public_key] = {**ACCOUNT, "equity": "lots"}
    assert "unexpected answer from /v1/accounts" in error(
        "wallet", "balance", "--file", str(wallet), "--rpc", node.url
    )
    node.answers.chain_id = bytes(32)
    assert "refusing to read its markets by this genesis" in error(
        "wallet", "book", "0", "--rpc", node.url, "--genesis", str(chain[1])
    )
    code, _, err = cli("wallet", "book", "0", "--depth", "501")
    assert code == 2 and "--depth must be in 1..500" in err


def test_default_rpc_is_the_config_default() -> None:
    assert f"http://127.0.0.1:{DEFAULT_RPC_PORT}" == DEFAULT_RPC_URL


def chosen(*argv: str) -> str:
    """The URL ``lockstep wallet …`` would talk to without ``--rpc`` (nothing is contacted)."""
    return choose_node(build_parser().parse_args(["wallet", *argv])).url


def test_default_node_rule(
    tmp_path: Path, chain: tuple[Genesis, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step of the rule ``lockstep wallet --help`` prints, in its order."""
    for name in [k for k in os.environ if k.startswith("LOCKSTEP_")]:
        monkeypatch.delenv(name)
    gpath = str(chain[1])
    local = generate_network(tmp_path / "local", n_validators=2, n_traders=1, base_port=41_000)
    hosts = ["10.9.8.7", "10.9.8.6"]
    spread = generate_network(tmp_path / "spread", n_validators=2, n_traders=1, hosts=hosts)
    lgen, sgen = (str(tmp_path / d / "genesis.toml") for d in ("local", "spread"))
    home = closed_home(tmp_path / "home", chain[1], 41_111)
    wild = closed_home(tmp_path / "wild", chain[1], 41_222, host="0.0.0.0")
    place = ["place", "--market", "0", "--side", "buy", "--size", "1", "--price", "1"]
    own = ["--file", str(local.wallets[0])]

    # 1. --home: its listener; a wildcard one at this machine's loopback. It beats --genesis.
    assert chosen(*place, "--home", str(home)) == "http://127.0.0.1:41111"
    assert chosen(*place, "--home", str(wild)) == "http://127.0.0.1:41222"
    assert chosen(*place, "--home", str(home), "--genesis", lgen) == ("http://127.0.0.1:41111")
    # 2. a genesis in a node's config/ is that node's.
    assert chosen("book", "0", "--genesis", str(home / "config" / "genesis.toml")) == (
        "http://127.0.0.1:41111"
    )
    # 3. a genesis in a network directory: node0, at 127.0.0.1 for `testnet up`'s layout, at
    # the host node0 advertises for `generate --hosts` (it listens on 0.0.0.0).
    assert chosen(*place, "--genesis", lgen) == "http://127.0.0.1:41001"
    assert chosen(*place, "--genesis", sgen) == (f"http://10.9.8.7:{DEFAULT_RPC_PORT}")
    # 5. a wallet in a network's wallets/ names that network (the reads need no genesis).
    assert chosen("balance", *own) == "http://127.0.0.1:41001"
    assert chosen("positions", "--file", str(spread.wallets[0])) == (
        f"http://10.9.8.7:{DEFAULT_RPC_PORT}"
    )
    # 6. otherwise this machine's node at the default port: a genesis that records no node
    # (its validator addresses are peer-to-peer endpoints, not RPC ones), a wallet elsewhere.
    assert chosen(*place, "--genesis", gpath) == DEFAULT_RPC_URL
    assert chosen("balance", "--file", str(tmp_path / "trader.json")) == DEFAULT_RPC_URL
    assert chosen("status") == DEFAULT_RPC_URL
    # 4. $LOCKSTEP_HOME: after --home and a genesis that records a node, before the wallet.
    monkeypatch.setenv("LOCKSTEP_HOME", str(home))
    assert chosen(*place, "--genesis", gpath) == "http://127.0.0.1:41111"
    assert chosen(*place, "--genesis", lgen) == "http://127.0.0.1:41001"
    assert chosen("balance", *own) == "http://127.0.0.1:41111"
    assert chosen("status") == "http://127.0.0.1:41111"


def test_default_node_used(
    tmp_path: Path, chain: tuple[Genesis, Path], node: Served, cli: Cli
) -> None:
    """A network directory whose node0 listens where the node is: the README's commands work
    without --rpc; --rpc still wins; --dry-run stays offline."""
    net = tmp_path / "lockstep-testnet"
    net.mkdir()
    (net / "genesis.toml").write_bytes(chain[1].read_bytes())
    closed_home(net / "node0", net / "genesis.toml", int(node.url.rsplit(":", 1)[1]))
    w = net / "wallets" / "trader0.json"
    save_wallet(w, TRADER, None)
    trade = ["--file", str(w), "--genesis", str(net / "genesis.toml"), "--market", "BTC-PERP"]
    trade += ["--side", "buy", "--size", "0.25", "--price", "59990"]

    doc = call_json(cli, "wallet", "place", *trade, "--wait")
    assert doc["submitted"]["status"] == "committed"
    assert doc["tx"]["body"]["expiry_height"] == 1234 + 100  # the node's height + --expires-in
    assert node.answers.submitted == [bytes.fromhex(doc["tx_hex"])]
    assert call_json(cli, "wallet", "book", "BTC-PERP", "--genesis", str(net / "genesis.toml"))
    assert call_json(cli, "wallet", "balance", "--file", str(w))["owner"] == OWNER_HEX
    assert call_json(cli, "wallet", "positions", "--file", str(w))["owner"] == OWNER_HEX

    code, out, err = cli("wallet", "balance", "--file", str(w), "--rpc", "http://127.0.0.1:9")
    assert (code, out) == (1, "") and "cannot reach the node" in err and "no --rpc" not in err
    code, out, err = cli("wallet", "place", *trade, "--dry-run")
    assert code == 1 and "--expiry-height is required without --rpc" in err
    dry = call_json(cli, "wallet", "place", *trade, "--dry-run", "--expiry-height", "9")
    assert dry["submitted"] is None and len(node.answers.submitted) == 1
    for command in ("place", "balance", "book"):  # the rule is in every node command's help
        code, out, _ = cli("wallet", command, "--help")
        assert code == 0 and "which node, when --rpc is not given" in out


def shape(doc: Any) -> Any:
    """The keys of a JSON document, recursively (a list by its first element)."""
    if isinstance(doc, dict):
        return {k: shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [shape(doc[0])] if doc else []
    return type(doc).__name__


def test_answers_match_views(
    tmp_path: Path, wallet: Path, chain: tuple[Genesis, Path], node: Served, cli: Cli
) -> None:
    """The fixed answers above have the shapes the node's views build over a real exchange, and
    the tables print those views (so a renamed field fails here, not in a trader's terminal)."""
    views = pytest.importorskip("lockstep.node.views")
    from lockstep.node.exchange.executor import Exchange

    genesis = chain[0]
    maker, taker = Signer(seed_of("trader-0")), Signer(seed_of("trader-1"))
    ex = Exchange.open(tmp_path / "ledger.db", genesis)

    def order(s: Signer, nonce: int, side: Side, market: int, price: int, size: int) -> SignedTx:
        tif = TimeInForce.GTC
        place = PlaceOrder(market, side, OrderType.LIMIT, tif, False, price, size, nonce)
        return Order(s.public_key, nonce, 10, place).sign(s, genesis.chain_id)

    stop = PlaceTrigger(0, Side.BUY, TriggerKind.STOP, OrderType.LIMIT, True, 610_000, 610_100,
                        250, 5)  # fmt: skip
    ex.apply_block(
        1,
        genesis.genesis_time_ms + 100,
        [
            order(maker, 1, Side.SELL, 0, 601_235, 500),
            order(maker, 2, Side.BUY, 1, 290_000, 150),
            order(taker, 3, Side.BUY, 0, 601_235, 250),
            order(taker, 4, Side.BUY, 0, 600_000, 100),
            Batch(maker.public_key, 5, 10, (stop, ScheduleCancel(1_300))).sign(
                maker, genesis.chain_id
            ),
        ],
    )
    btc = genesis.markets[0]
    account = views.account_json(ex, genesis, maker.public_key)
    book = views.book_json(ex, btc, 20)
    trades = views.trades_json(ex, btc, 10)
    assert shape(account) == shape(ACCOUNT)
    assert account["cancel_after_height"] == 1_300
    assert views.trigger_json(ex.open_triggers(maker.public_key)[0], btc) == {
        **ACCOUNT["triggers"][0],
        "trigger_id": 4,
        "client_id": 5,
        "height": 1,
    }
    assert shape(book) == shape(BOOK)
    assert shape(trades) == [shape(TRADE)]

    node.answers.accounts[maker.public_key] = account
    read = ["--account", maker.public_key.hex(), "--rpc", node.url]
    checks = [("balance", account["collateral_usd"]), ("positions", "-0.250"), ("orders", "1.50"),
              ("orders", "limit 61010.0")]  # fmt: skip
    for command, text in checks:
        code, out, err = cli("wallet", command, *read)
        assert (code, err) == (0, "") and text in out


# --------------------------------------------------------------------------- against a real node


async def test_triggers_modify_and_switch_on_a_node(tmp_path: Path) -> None:
    """The new commands against a real node process: a stop rests in the account, a modify
    re-prices an order, the dead man's switch empties the account when its height passes, a
    stop on the side the mark already reached is refused by name, and the account's
    ``orders:`` stream tells each step after its snapshot, numbered without a gap."""
    with one_network_at_a_time(), local_network(tmp_path / "net", n_nodes=1, traders=1) as net:
        node = net.nodes[0]
        wallet_file = tmp_path / "net" / "wallets" / "trader0.json"
        owner = wallet_public_key(wallet_file).hex()
        own = ["--file", str(wallet_file), "--genesis", str(tmp_path / "net" / "genesis.toml")]
        btc = ["--market", "BTC-PERP"]

        def wallet(*argv: str) -> Any:
            return trio.to_thread.run_sync(partial(run_json, "wallet", *argv))

        def account_now() -> dict[str, Any]:
            return get_json(node.rpc_url, f"/v1/accounts/{owner}")

        await trio.to_thread.run_sync(
            partial(wait_for, lambda: get_status(node.rpc_url)["height"] >= 1, 30, "a block")
        )
        host, port = node.rpc_url.removeprefix("http://").rsplit(":", 1)
        ws = await WsClient.connect(host, int(port), "/v1/ws")
        await ws.send_json({"op": "subscribe", "stream": f"orders:{owner}"})
        with trio.fail_after(10):
            snap = await ws.receive_json()
        assert (snap["type"], snap["seq"]) == ("snapshot", 0)
        assert {k: snap["data"][k] for k in ("open_orders", "triggers", "cancel_after_height")} == {
            "open_orders": [],
            "triggers": [],
            "cancel_after_height": None,
        }
        seen: list[dict[str, Any]] = []

        async def events(n: int) -> list[tuple[str, int, str]]:
            with trio.fail_after(20):
                while len(seen) < n:
                    seen.append(await ws.receive_json())
            assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
            return [(e["data"]["kind"], e["data"]["client_id"], e["data"]["reason"]) for e in seen]

        # A buy stop above the mark (60000 at genesis) rests untriggered.
        doc = await wallet(
            "place", *own, *btc, "--side", "buy", "--size", "0.01", "--price", "65010",
            "--trigger-price", "65000", "--trigger", "stop", "--client-id", "7", "--wait",
        )  # fmt: skip
        assert doc["submitted"]["result"]["reason"] == "OK", doc["submitted"]
        listed = await wallet("orders", "--file", str(wallet_file))
        (stop,) = listed["triggers"]
        assert {k: stop[k] for k in ("client_id", "kind", "side", "trigger_price", "price")} == {
            "client_id": 7,
            "kind": "STOP",
            "side": "BUY",
            "trigger_price": "65000.0",
            "price": "65010.0",
        }
        assert await events(1) == [("trigger_placed", 7, "OK")]

        # A resting bid, re-priced: it leaves the book (MODIFIED) and re-enters at the new price.
        await wallet("place", *own, *btc, "--side", "buy", "--size", "0.01", "--price", "59000",
                     "--client-id", "8", "--wait")  # fmt: skip
        doc = await wallet("modify", *own, *btc, "--client-id", "8", "--price", "59100",
                           "--size", "0.02", "--wait")  # fmt: skip
        assert doc["submitted"]["result"]["reason"] == "OK", doc["submitted"]
        (order,) = (await trio.to_thread.run_sync(account_now))["open_orders"]
        assert (order["client_id"], order["price"], order["remaining_lots"]) == (8, "59100.0", 20)
        assert (await events(4))[1:] == [
            ("placed", 8, "OK"),
            ("cancelled", 8, "MODIFIED"),
            ("placed", 8, "OK"),
        ]

        # A sell stop at 65000 would fire at once (the mark is below it): refused at the door.
        out = await trio.to_thread.run_sync(
            partial(run, "wallet", "place", *own, *btc, "--side", "sell", "--size", "0.01",
                    "--price", "64990", "--trigger-price", "65000", "--trigger", "stop")
        )  # fmt: skip
        assert out.returncode == 1 and "TRIGGER_WRONG_SIDE" in out.stderr, out.stderr

        # The dead man's switch: set, seen in the account, then it fires and clears itself.
        doc = await wallet("schedule-cancel", *own, "--in-blocks", "20", "--wait")
        assert doc["submitted"]["result"]["reason"] == "OK", doc["submitted"]
        after = doc["tx"]["body"]["batch"][0]["height"]
        acct = await trio.to_thread.run_sync(account_now)
        assert acct["cancel_after_height"] == after or acct["height"] > after

        def fired() -> dict[str, Any] | None:
            acct = account_now()
            return acct if acct["height"] > after else None

        emptied = await trio.to_thread.run_sync(partial(wait_for, fired, 30, "the switch"))
        assert (emptied["open_orders"], emptied["triggers"]) == ([], [])
        assert emptied["cancel_after_height"] is None
        assert sorted((await events(6))[4:]) == [
            ("cancelled", 7, "SCHEDULED_CANCEL"),
            ("cancelled", 8, "SCHEDULED_CANCEL"),
        ]
        assert {e["data"]["height"] for e in seen[4:]} == {after + 1}
        await ws.aclose()
