"""Realistic order flow for a local network, and the validators' oracle price feeds.

Theory of operation. One seeded random price path per market (a geometric random walk in
integer ticks) drives everything, so a run is reproducible given its seed:

* **oracles**: every validator signs an ``OraclePrice`` each second with the path's price plus
  its own small noise, and submits it to its own node;
* **market makers** re-quote both sides around the oracle price every ``quote_interval_s`` with
  one atomic ``Batch`` (cancel-all, then post-only levels), so the book is always two-sided;
* **takers** cross the spread with IOC and market orders, and sometimes rest a limit order and
  cancel it later;
* **leveraged traders** open positions near the maximum leverage and hold them, so a price move
  against them gets them liquidated.

Every submission goes through a node's real RPC. Every acknowledged transaction id is kept in
:attr:`LoadGenerator.acked` (the invariant checker later asks the nodes what became of each),
and a sample of submissions waits for commit to measure submit → committed latency per node.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio
from lockstep.consensus.actions import (
    Batch,
    Cancel,
    CancelAll,
    CancelOrder,
    MarketPrice,
    OraclePrice,
    Order,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
    TxBody,
)
from lockstep.consensus.crypto import Signer
from lockstep.consensus.genesis import Genesis, Market

EXPIRY_BLOCKS = 600
"""Expiry window of generated transactions: long enough to survive a sequencer failover."""

WAIT_SAMPLE = 0.2
"""Fraction of submissions that wait for commit (latency measurement)."""


@dataclass
class PricePath:
    """A geometric random walk in integer ticks, one step per ``step_s``."""

    start_ticks: int
    seed: int
    volatility_per_step: float = 0.0004
    step_s: float = 0.25
    _ticks: list[int] = field(default_factory=list)

    def at(self, t_s: float) -> int:
        step = max(0, int(t_s / self.step_s))
        if not self._ticks:
            self._ticks.append(self.start_ticks)
            self._rng = random.Random(self.seed)
        while len(self._ticks) <= step:
            last = self._ticks[-1]
            move = math.exp(self._rng.gauss(0.0, self.volatility_per_step))
            self._ticks.append(max(1, round(last * move)))
        return self._ticks[step]


@dataclass
class Stats:
    submitted: int = 0
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: int = 0
    latencies_ms: dict[int, deque[float]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=2_000))
    )
    per_node_accepted: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def latency_percentiles(self, node: int) -> tuple[float | None, float | None]:
        xs = sorted(self.latencies_ms.get(node, ()))
        if not xs:
            return None, None
        return xs[len(xs) // 2], xs[min(len(xs) - 1, (len(xs) * 99) // 100)]


def _spacing(m: Market) -> int:
    """Ticks between a market maker's levels: ~5 basis points of the starting price."""
    return max(1, m.initial_price_ticks // 20_000)


class LoadGenerator:
    def __init__(
        self,
        genesis: Genesis,
        rpc_urls: Sequence[str],
        validators: Sequence[Signer],
        traders: Sequence[Signer],
        rate_per_s: float = 60.0,
        seed: int = 1,
    ) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.rpc_urls = list(rpc_urls)
        self.validators = list(validators)
        self.traders = list(traders)
        self.rate_per_s = rate_per_s
        self.rng = random.Random(seed)
        self.paths = {
            m.market_id: PricePath(m.initial_price_ticks, seed * 1000 + m.market_id)
            for m in genesis.markets
        }
        self.t0 = time.monotonic()
        self.stats = Stats()
        self.acked: dict[bytes, int] = {}
        """tx id → node index that acknowledged it."""
        self.height = 0
        self.down: set[int] = set()
        """Nodes the chaos driver has taken down: submissions avoid them."""
        self._nonce = int(time.time() * 1000) << 20

    # ------------------------------------------------------------------ plumbing

    def price(self, market: int) -> int:
        return self.paths[market].at(time.monotonic() - self.t0)

    def next_nonce(self) -> int:
        self._nonce += 1 + self.rng.randrange(16)
        return self._nonce

    def _pick_node(self, preferred: int | None = None) -> int:
        live = [i for i in range(len(self.rpc_urls)) if i not in self.down]
        if not live:
            return 0
        if preferred is not None and preferred in live:
            return preferred
        return self.rng.choice(live)

    async def submit(
        self, client: httpx.AsyncClient, body: TxBody, signer: Signer, node: int | None = None
    ) -> dict[str, Any] | None:
        tx = body.sign(signer, self.chain_id)
        i = self._pick_node(node)
        wait = self.rng.random() < WAIT_SAMPLE
        url = self.rpc_urls[i] + "/v1/actions" + ("?wait=true&timeout_ms=10000" if wait else "")
        self.stats.submitted += 1
        started = time.monotonic()
        try:
            r = await client.post(
                url, content=tx.encode(), headers={"content-type": "application/cbor"}
            )
            doc = r.json()
        except (httpx.HTTPError, ValueError):
            self.stats.errors += 1
            return None
        if r.status_code in (200, 202):
            self.stats.accepted += 1
            self.stats.per_node_accepted[i] += 1
            self.acked[bytes.fromhex(doc["tx_id"])] = i
            if wait and r.status_code == 200:
                self.stats.latencies_ms[i].append((time.monotonic() - started) * 1000)
            return doc
        self.stats.refused[doc.get("error", str(r.status_code))] += 1
        return None

    def _body_header(self, signer: Signer) -> dict[str, Any]:
        return {
            "signer": signer.public_key,
            "nonce": self.next_nonce(),
            "expiry_height": self.height + EXPIRY_BLOCKS,
        }

    # ------------------------------------------------------------------ actors

    async def run(self, client: httpx.AsyncClient) -> None:
        """Run every actor until cancelled."""
        n = len(self.traders)
        makers = self.traders[: max(1, n // 4)]
        levered = self.traders[max(1, n // 4) : max(2, n // 4 + max(1, n // 4))]
        takers = self.traders[len(makers) + len(levered) :] or self.traders[-1:]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._track_height, client)
            for i, v in enumerate(self.validators):
                nursery.start_soon(self._oracle, client, i, v)
            for j, mk in enumerate(makers):
                for m in self.genesis.markets:
                    nursery.start_soon(self._market_maker, client, mk, m, j)
            taker_rate = max(1.0, self.rate_per_s * 0.6 / max(1, len(takers)))
            for tk in takers:
                nursery.start_soon(self._taker, client, tk, taker_rate)
            for lv in levered:
                nursery.start_soon(self._leveraged, client, lv)

    async def _track_height(self, client: httpx.AsyncClient) -> None:
        while True:
            for i in range(len(self.rpc_urls)):
                if i in self.down:
                    continue
                try:
                    r = await client.get(self.rpc_urls[i] + "/v1/status", timeout=1.0)
                    self.height = max(self.height, int(r.json()["height"]))
                    break
                except (httpx.HTTPError, ValueError, KeyError):
                    continue
            await trio.sleep(0.5)

    async def _oracle(self, client: httpx.AsyncClient, index: int, signer: Signer) -> None:
        noise = random.Random(index + 7)
        while True:
            prices = []
            for m in self.genesis.markets:
                p = self.price(m.market_id)
                jitter = round(p * noise.uniform(-0.0002, 0.0002))
                prices.append(MarketPrice(m.market_id, max(1, min(m.max_price_ticks, p + jitter))))
            body = OraclePrice(**self._body_header(signer), prices=tuple(prices))
            await self.submit(client, body, signer, node=index)
            await trio.sleep(1.0)

    async def _market_maker(
        self, client: httpx.AsyncClient, signer: Signer, m: Market, j: int
    ) -> None:
        levels, spacing = 5, _spacing(m)
        await trio.sleep(0.2 * j)
        while True:
            mid = self.price(m.market_id)
            actions: list[Any] = [CancelAll(m.market_id)]
            for k in range(1, levels + 1):
                size = m.min_size_lots * self.rng.randint(5, 30)
                for side, px in (
                    (Side.BUY, mid - k * spacing - j),
                    (Side.SELL, mid + k * spacing + j),
                ):
                    actions.append(
                        PlaceOrder(
                            m.market_id,
                            side,
                            OrderType.LIMIT,
                            TimeInForce.GTC,
                            False,
                            max(1, px),
                            size,
                            self.rng.getrandbits(62),
                        )
                    )
            await self.submit(
                client, Batch(**self._body_header(signer), batch=tuple(actions)), signer
            )
            await trio.sleep(1.0)

    async def _taker(self, client: httpx.AsyncClient, signer: Signer, rate: float) -> None:
        resting: deque[tuple[int, int]] = deque()
        while True:
            m = self.rng.choice(self.genesis.markets)
            mid = self.price(m.market_id)
            side = self.rng.choice((Side.BUY, Side.SELL))
            size = m.min_size_lots * self.rng.randint(1, 5)
            roll = self.rng.random()
            cid = self.rng.getrandbits(62)
            if roll < 0.15 and resting:
                market, old = resting.popleft()
                body: TxBody = Cancel(**self._body_header(signer), cancel=CancelOrder(market, old))
            elif roll < 0.35:
                away = mid - 50 * (1 if side == Side.BUY else -1)
                place = PlaceOrder(
                    m.market_id,
                    side,
                    OrderType.LIMIT,
                    TimeInForce.GTC,
                    False,
                    max(1, away),
                    size,
                    cid,
                )
                resting.append((m.market_id, cid))
                body = Order(**self._body_header(signer), place=place)
            elif roll < 0.6:
                worst = mid * (1.01 if side == Side.BUY else 0.99)
                place = PlaceOrder(
                    m.market_id,
                    side,
                    OrderType.MARKET,
                    TimeInForce.IOC,
                    False,
                    max(1, round(worst)),
                    size,
                    cid,
                )
                body = Order(**self._body_header(signer), place=place)
            else:
                reach = 4 * _spacing(m)  # through the makers' first levels
                cross = mid + (reach if side == Side.BUY else -reach)
                place = PlaceOrder(
                    m.market_id,
                    side,
                    OrderType.LIMIT,
                    TimeInForce.IOC,
                    False,
                    max(1, cross),
                    size,
                    cid,
                )
                body = Order(**self._body_header(signer), place=place)
            await self.submit(client, body, signer)
            await trio.sleep(self.rng.expovariate(rate))

    async def _leveraged(self, client: httpx.AsyncClient, signer: Signer) -> None:
        """Open a large position near maximum leverage, hold it, flip now and then."""
        m = self.genesis.markets[0]
        while True:
            side = self.rng.choice((Side.BUY, Side.SELL))
            mid = self.price(m.market_id)
            notional_target = 900_000 * 10**6 * 18  # ~18× on a $1M account
            lots = max(
                m.min_size_lots,
                min(m.max_size_lots, notional_target // (mid * m.contract_multiplier)),
            )
            worst = mid * (1.02 if side == Side.BUY else 0.98)
            for _ in range(4):  # build the position in clips the book can absorb
                place = PlaceOrder(
                    m.market_id,
                    side,
                    OrderType.MARKET,
                    TimeInForce.IOC,
                    False,
                    max(1, round(worst)),
                    max(m.min_size_lots, lots // 4),
                    self.rng.getrandbits(62),
                )
                await self.submit(client, Order(**self._body_header(signer), place=place), signer)
                await trio.sleep(0.5)
            await trio.sleep(self.rng.uniform(20, 40))
