"""JSON views of exchange state for the RPC, computed on the SQLite worker.

Every function takes the :class:`Exchange` and returns plain JSON values (integers exact; byte
strings hex; prices and sizes both as integers and as human decimal strings for people), and
is called through the worker, so it never races ``apply_block``. ``docs/rpc.md`` describes the
shapes.
"""

from __future__ import annotations

from typing import Any

from lockstep.consensus.actions import OrderType
from lockstep.consensus.genesis import Genesis, Market

from .exchange.events import OrderEvent
from .exchange.executor import Exchange, TxOutcome
from .exchange.ledger import Trade
from .exchange.mempool_rules import Reason
from .exchange.triggers import Trigger
from .exchange.units import format_amount, format_price, format_size


def market_json(m: Market, ex: Exchange) -> dict[str, Any]:
    state = ex.market_state(m.market_id)
    return {
        "market_id": m.market_id,
        "symbol": m.symbol,
        "tick_size": str(m.tick_size),
        "lot_size": str(m.lot_size),
        "min_size_lots": m.min_size_lots,
        "max_size_lots": m.max_size_lots,
        "maker_fee_ppm": m.maker_fee_ppm,
        "taker_fee_ppm": m.taker_fee_ppm,
        "funding_interval_ms": m.funding_interval_ms,
        "trigger_slippage_ppm": m.trigger_slippage_ppm,
        "index_ticks": state.index,
        "index": format_price(m, state.index),
        "mark_ticks": state.mark,
        "mark": format_price(m, state.mark),
        "open_interest_lots": state.long_oi,
        "last_funding_rate_ppm": state.last_funding_rate_ppm,
        "next_funding_ms": state.next_funding_ms,
    }


def markets_json(ex: Exchange, genesis: Genesis) -> list[dict[str, Any]]:
    return [market_json(m, ex) for m in genesis.markets]


def book_json(ex: Exchange, m: Market, depth: int) -> dict[str, Any]:
    bids, asks = ex.l2(m.market_id, depth)

    def levels(side: list[tuple[int, int]]) -> list[dict[str, Any]]:
        return [
            {
                "price_ticks": p,
                "size_lots": s,
                "price": format_price(m, p),
                "size": format_size(m, s),
            }
            for p, s in side
        ]

    return {"market": m.market_id, "height": ex.height, "bids": levels(bids), "asks": levels(asks)}


def trade_json(t: Trade, m: Market) -> dict[str, Any]:
    return {
        "trade_id": t.trade_id,
        "height": t.height,
        "market": t.market,
        "price_ticks": t.price,
        "size_lots": t.size,
        "price": format_price(m, t.price),
        "size": format_size(m, t.size),
        "taker_side": "BUY" if t.taker_side == 0 else "SELL",
        "taker": t.taker.hex(),
        "maker": t.maker.hex(),
        "maker_order_id": t.maker_order_id,
        "taker_fee": t.taker_fee,
        "maker_fee": t.maker_fee,
        "liquidation": t.liquidation,
    }


def trades_json(ex: Exchange, m: Market, limit: int) -> list[dict[str, Any]]:
    # Looked up on the class: the instance also has a ``recent_trades`` attribute (the rings).
    return [trade_json(t, m) for t in Exchange.recent_trades(ex, m.market_id, limit)]


def account_json(ex: Exchange, genesis: Genesis, owner: bytes) -> dict[str, Any] | None:
    view = ex.account(owner)
    if view is None:
        return None
    markets = {m.market_id: m for m in genesis.markets}
    positions = []
    for mid, size, notional, realized, funding, upnl in ex.positions(owner):
        m = markets[mid]
        positions.append(
            {
                "market": mid,
                "symbol": m.symbol,
                "size_lots": size,
                "size": format_size(m, abs(size)) if size >= 0 else "-" + format_size(m, -size),
                "open_notional": notional,
                "realized_pnl": realized,
                "unrealized_pnl": upnl,
                "funding_paid": funding,
            }
        )
    return {
        "owner": owner.hex(),
        "height": ex.height,
        "collateral": view.collateral,
        "collateral_usd": format_amount(view.collateral),
        "equity": view.equity,
        "initial_margin": view.initial_requirement,
        "maintenance_margin": view.maintenance_requirement,
        "positions": positions,
        **orders_json(ex, markets, owner),
    }


def orders_json(ex: Exchange, markets: dict[int, Market], owner: bytes) -> dict[str, Any]:
    """What an account has working: resting orders, untriggered triggers and its dead man's
    switch. Part of the account view, and the snapshot of its ``orders:`` stream."""
    orders = []
    for o in ex.open_orders(owner):
        m = markets[o.market]
        orders.append(
            {
                "order_id": o.order_id,
                "market": o.market,
                "symbol": m.symbol,
                "client_id": o.client_id,
                "side": o.side.name,
                "price_ticks": o.price,
                "price": format_price(m, o.price),
                "size_lots": o.size,
                "remaining_lots": o.remaining,
                "reduce_only": o.reduce_only,
                "height": o.height,
            }
        )
    return {
        "open_orders": orders,
        "triggers": [trigger_json(t, markets[t.market]) for t in ex.open_triggers(owner)],
        "cancel_after_height": ex.cancel_after_height(owner),
    }


def trigger_json(t: Trigger, m: Market) -> dict[str, Any]:
    """An untriggered order. A market trigger has no limit price (``price`` null, ticks 0);
    a TP/SL of a position may have size 0, the whole position when it fires."""
    return {
        "trigger_id": t.trigger_id,
        "market": t.market,
        "symbol": m.symbol,
        "client_id": t.client_id,
        "side": t.side.name,
        "kind": t.kind.name,
        "order_type": t.order_type.name,
        "trigger_price_ticks": t.trigger_price,
        "trigger_price": format_price(m, t.trigger_price),
        "price_ticks": t.price,
        "price": format_price(m, t.price) if t.order_type == OrderType.LIMIT else None,
        "size_lots": t.size,
        "size": format_size(m, t.size),
        "reduce_only": t.reduce_only,
        "attach": t.attach.name,
        "dormant": t.parent_order_id != 0,
        "height": t.height,
    }


def order_event_json(e: OrderEvent, m: Market, height: int) -> dict[str, Any]:
    """One change to an account's orders or triggers, as its ``orders:`` stream carries it.
    ``order_id`` is the trigger id for the trigger kinds, and 0 for a TP/SL dropped before it
    was placed; ``reason`` says why a ``cancelled`` went (``OK`` for the other kinds)."""
    return {
        "height": height,
        "kind": e.kind,
        "order_id": e.order_id,
        "market": e.market,
        "symbol": m.symbol,
        "client_id": e.client_id,
        "reason": Reason(e.reason).name,
        "code": int(e.reason),
    }


def outcome_json(o: TxOutcome) -> dict[str, Any]:
    return {
        "index": o.index,
        "reason": Reason(o.reason).name,
        "code": int(o.reason),
        "action_index": o.action_index,
    }


def ledger_totals_json(ex: Exchange, genesis: Genesis) -> dict[str, Any]:
    """Global conservation of quote atoms, checked from the outside (chaos invariant checks).

    Collateral moves between accounts (fees, funding, PnL, insurance, transfers) and into open
    notional when positions open; only withdrawals take atoms out of the ledger, so
    ``Σ collateral − Σ open_notional + withdrawn = genesis total`` at every height.
    """
    ledger = ex.ledger
    collateral = sum(a.collateral for a in ledger.accounts.values())
    open_notional = sum(
        p.open_notional for a in ledger.accounts.values() for p in a.positions.values()
    )
    genesis_total = sum(a.collateral for a in genesis.accounts) + genesis.insurance_fund
    return {
        "height": ex.height,
        "accounts": len(ledger.accounts),
        "total_collateral": collateral,
        "total_open_notional": open_notional,
        "withdrawn": ledger.withdrawn_total,
        "genesis_total": genesis_total,
        "conserved": collateral - open_notional + ledger.withdrawn_total == genesis_total,
        "open_interest_balanced": all(m.long_oi == m.short_oi for m in ledger.markets.values()),
    }


def state_roots(ex: Exchange, first: int, last: int) -> list[tuple[int, bytes]]:
    """The state root after each applied height in ``first..last``, from the ledger itself
    (written in the same transaction as the state it commits to)."""
    return ex.store.state_roots(first, last)
