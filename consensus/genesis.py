"""Genesis: the chain's founding document, and the chain id that every signature binds to.

Theory of operation: operators share a ``genesis.toml`` (human-edited, comments allowed). It is
parsed into :class:`Genesis`, a wire object with a fixed field layout, and validated (unique
keys, positive weights, market parameters that convert exactly between human units and integer
ticks/lots/atoms). The chain id is ``SHA-256(DOMAIN_GENESIS || canonical CBOR(genesis))``: two
files that differ only in comments, key order or whitespace name the same chain, and any change
of substance names a different one.

Units. Money is in *quote atoms*: 10^-QUOTE_DECIMALS of the quote currency (USD). A market's
price is an integer number of ticks, its size an integer number of lots; ``tick_size_atoms`` is
the quote atoms per whole base unit that one tick is worth, ``lot_size_units`` the base units (at
``base_decimals``) in one lot. The notional of ``size`` lots at ``price`` ticks is
``price * size * contract_multiplier`` atoms, where ``contract_multiplier = tick_size_atoms *
lot_size_units / 10**base_decimals`` must be a positive integer (checked here).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import limits
from .codec import (
    U16,
    U32,
    U64,
    Bytes,
    ListOf,
    OneOf,
    OutOfRange,
    Struct,
    Text,
    decode,
    field,
    validate_fields,
    wire,
)
from .crypto import DOMAIN_GENESIS, sha256

QUOTE_DECIMALS = 6
"""Quote atoms per USD = 10**6 (micro-dollars), as USDC does."""

PPM = 1_000_000
"""Rates (fees, margins, funding clamps) are parts per million."""

Key = Bytes(32)


class GenesisError(ValueError):
    """The genesis file is malformed or inconsistent. Names the offending entry."""


class _Validated(Struct):
    __slots__ = ()

    def __post_init__(self) -> None:
        validate_fields(self)


@wire(50)
@dataclass(frozen=True, slots=True)
class Validator(_Validated):
    public_key: bytes = field(Key)
    """Ed25519 key: signs votes, timeouts, proposals, oracle prices; the peer identity."""
    vrf_key: bytes = field(Key)
    """ECVRF public key for sequencer tickets (a separate key: one key, one purpose)."""
    weight: int = field(U64)
    address: str = field(Text(limits.MAX_ADDRESS_CHARS))
    """``host:port`` of its p2p listener, where peers dial it."""
    name: str = field(Text(limits.MAX_NAME_CHARS))


@wire(51)
@dataclass(frozen=True, slots=True)
class LeverageTier(_Validated):
    """Positions with notional up to ``max_notional`` atoms use these margin rates."""

    max_notional: int = field(U64)
    initial_margin_ppm: int = field(U32)
    maintenance_margin_ppm: int = field(U32)


@wire(52)
@dataclass(frozen=True, slots=True)
class Market(_Validated):
    market_id: int = field(U32)
    symbol: str = field(Text(limits.MAX_NAME_CHARS))
    base_decimals: int = field(U16)
    tick_size_atoms: int = field(U64)
    lot_size_units: int = field(U64)
    min_size_lots: int = field(U64)
    max_size_lots: int = field(U64)
    max_price_ticks: int = field(U64)
    leverage_tiers: tuple[LeverageTier, ...] = field(
        ListOf(OneOf(LeverageTier), limits.MAX_LEVERAGE_TIERS, min_len=1)
    )
    maker_fee_ppm: int = field(U32)
    taker_fee_ppm: int = field(U32)
    liquidation_fee_ppm: int = field(U32)
    """Charged on liquidated notional, paid to the insurance fund."""
    funding_interval_ms: int = field(U64)
    funding_clamp_ppm: int = field(U32)
    """Funding rate per interval is clamped to ±this."""
    oracle_staleness_ms: int = field(U64)
    """Oracle observations older than this (by block time) are ignored."""
    initial_price_ticks: int = field(U64)
    """Index price until the first oracle observation lands."""
    trigger_slippage_ppm: int = field(U32)
    """A fired market trigger trades no further than this from the mark (a stop in a fast
    market fills, but never at any price)."""

    @property
    def contract_multiplier(self) -> int:
        """Quote atoms per (tick × lot); exact by construction (see the module docstring)."""
        return self.tick_size_atoms * self.lot_size_units // 10**self.base_decimals

    @property
    def tick_size(self) -> Decimal:
        """Human price step in quote currency per base unit (e.g. Decimal('0.1') USD)."""
        return Decimal(self.tick_size_atoms).scaleb(-QUOTE_DECIMALS).normalize()

    @property
    def lot_size(self) -> Decimal:
        """Human size step in base units (e.g. Decimal('0.001') BTC)."""
        return Decimal(self.lot_size_units).scaleb(-self.base_decimals).normalize()


@wire(53)
@dataclass(frozen=True, slots=True)
class Account(_Validated):
    owner: bytes = field(Key)
    collateral: int = field(U64)
    """Initial collateral in quote atoms."""


@wire(54)
@dataclass(frozen=True, slots=True)
class Timing(_Validated):
    view_timeout_ms: int = field(U64)
    """First timeout of a view; doubles on consecutive timeouts up to view_timeout_max_ms."""
    view_timeout_max_ms: int = field(U64)
    block_interval_ms: int = field(U64)
    """A sequencer waits this long for orders to batch before proposing a non-empty block."""
    epoch_views: int = field(U64)
    """Views per epoch: one VRF-elected sequencer leads them all while healthy."""
    max_clock_drift_ms: int = field(U64)
    """A block's timestamp may be at most this far ahead of a validator's clock to get its vote."""


@wire(55)
@dataclass(frozen=True, slots=True)
class Genesis(_Validated):
    chain_name: str = field(Text(limits.MAX_NAME_CHARS))
    genesis_time_ms: int = field(U64)
    validators: tuple[Validator, ...] = field(
        ListOf(OneOf(Validator), limits.MAX_VALIDATORS, min_len=1)
    )
    markets: tuple[Market, ...] = field(ListOf(OneOf(Market), limits.MAX_MARKETS, min_len=1))
    accounts: tuple[Account, ...] = field(ListOf(OneOf(Account), limits.MAX_GENESIS_ACCOUNTS))
    insurance_fund: int = field(U64)
    timing: Timing = field(OneOf(Timing))

    def __post_init__(self) -> None:
        validate_fields(self)
        check_genesis(self)

    def __wire_check__(self) -> None:
        check_genesis(self)

    def encode_canonical(self) -> bytes:
        return self.encode()

    @property
    def chain_id(self) -> bytes:
        return sha256(DOMAIN_GENESIS + self.encode())

    @property
    def total_weight(self) -> int:
        return sum(v.weight for v in self.validators)

    def market(self, market_id: int) -> Market | None:
        for m in self.markets:
            if m.market_id == market_id:
                return m
        return None


def check_genesis(g: Genesis) -> None:
    """Consistency rules beyond field types. Raises :class:`GenesisError` naming the entry."""
    seen: set[bytes] = set()
    for i, v in enumerate(g.validators):
        if v.weight == 0:
            raise GenesisError(f"validators[{i}] ({v.name}): weight must be positive")
        for k in (v.public_key, v.vrf_key):
            if k in seen:
                raise GenesisError(f"validators[{i}] ({v.name}): key {k.hex()} appears twice")
            seen.add(k)
    if g.total_weight >= 2**62:
        raise GenesisError("total validator weight must be below 2^62")
    ids = [m.market_id for m in g.markets]
    if ids != sorted(set(ids)):
        raise GenesisError(f"market ids must be unique and ascending, got {ids}")
    for m in g.markets:
        _check_market(m)
    owners = [a.owner for a in g.accounts]
    if owners != sorted(set(owners)):
        raise GenesisError("accounts must be unique and sorted by owner key")
    t = g.timing
    if not 0 < t.view_timeout_ms <= t.view_timeout_max_ms:
        raise GenesisError("timing: need 0 < view_timeout_ms ≤ view_timeout_max_ms")
    if t.epoch_views < 1:
        raise GenesisError("timing: epoch_views must be at least 1")


def _check_market(m: Market) -> None:
    where = f"market {m.market_id} ({m.symbol})"
    if m.tick_size_atoms == 0 or m.lot_size_units == 0:
        raise GenesisError(f"{where}: tick and lot sizes must be positive")
    scale = 10**m.base_decimals
    if (m.tick_size_atoms * m.lot_size_units) % scale or m.contract_multiplier == 0:
        raise GenesisError(
            f"{where}: tick_size_atoms × lot_size_units must be a positive multiple of "
            f"10^base_decimals, so one tick of one lot is a whole number of quote atoms"
        )
    if not 0 < m.min_size_lots <= m.max_size_lots:
        raise GenesisError(f"{where}: need 0 < min_size_lots ≤ max_size_lots")
    if not 0 < m.initial_price_ticks <= m.max_price_ticks:
        raise GenesisError(f"{where}: need 0 < initial_price_ticks ≤ max_price_ticks")
    if m.max_price_ticks * m.max_size_lots * m.contract_multiplier >= 2**62:
        raise GenesisError(f"{where}: max notional must stay below 2^62 atoms")
    last = 0
    for t in m.leverage_tiers:
        if t.max_notional <= last:
            raise GenesisError(f"{where}: leverage tiers must have increasing max_notional")
        if not 0 < t.maintenance_margin_ppm < t.initial_margin_ppm <= PPM:
            raise GenesisError(f"{where}: need 0 < maintenance < initial margin ≤ 100%")
        last = t.max_notional
    if m.maker_fee_ppm > m.taker_fee_ppm or m.taker_fee_ppm > PPM // 10:
        raise GenesisError(f"{where}: need maker fee ≤ taker fee ≤ 10%")
    if m.funding_interval_ms == 0 or m.oracle_staleness_ms == 0:
        raise GenesisError(f"{where}: funding interval and oracle staleness must be positive")
    if not 0 < m.trigger_slippage_ppm < PPM:
        raise GenesisError(f"{where}: need 0 < trigger slippage < 100%")


GENESIS_MAX_BYTES = limits.MAX_GENESIS_BYTES


def decode_genesis(data: bytes) -> Genesis:
    """Strictly decode canonical genesis bytes (as sent to a syncing peer)."""
    try:
        return decode(data, Genesis, max_bytes=GENESIS_MAX_BYTES)
    except OutOfRange as e:
        raise GenesisError(str(e)) from None


# --------------------------------------------------------------------------- TOML form


def _hex32(value: Any, where: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise GenesisError(f"{where}: expected 64 hex characters") from None
    if len(raw) != 32:
        raise GenesisError(f"{where}: expected 32 bytes, got {len(raw)}")
    return raw


def _build(cls: type[Struct], table: Any, where: str, **convert: Any) -> Any:
    if not isinstance(table, dict):
        raise GenesisError(f"{where}: expected a table")
    names = [f for f, _ in cls._WIRE_FIELDS]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise GenesisError(f"{where}: unknown key(s) {unknown}")
    missing = [n for n in names if n not in table]
    if missing:
        raise GenesisError(f"{where}: missing key(s) {missing}")
    kwargs = {n: convert[n](table[n], f"{where}.{n}") if n in convert else table[n] for n in names}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise GenesisError(f"{where}: {e}") from None


def genesis_from_dict(doc: dict[str, Any]) -> Genesis:
    """Build a Genesis from the parsed TOML document (keys are hex strings there)."""

    def validators(value: Any, where: str) -> tuple[Validator, ...]:
        return tuple(
            _build(Validator, v, f"{where}[{i}]", public_key=_hex32, vrf_key=_hex32)
            for i, v in enumerate(value)
        )

    def markets(value: Any, where: str) -> tuple[Market, ...]:
        def tiers(value: Any, where: str) -> tuple[LeverageTier, ...]:
            return tuple(_build(LeverageTier, t, f"{where}[{i}]") for i, t in enumerate(value))

        return tuple(
            _build(Market, m, f"{where}[{i}]", leverage_tiers=tiers) for i, m in enumerate(value)
        )

    def accounts(value: Any, where: str) -> tuple[Account, ...]:
        built = [_build(Account, a, f"{where}[{i}]", owner=_hex32) for i, a in enumerate(value)]
        return tuple(sorted(built, key=lambda a: a.owner))

    def timing(value: Any, where: str) -> Timing:
        return _build(Timing, value, where)

    return _build(
        Genesis,
        doc,
        "genesis",
        validators=validators,
        markets=markets,
        accounts=accounts,
        timing=timing,
    )


def load_genesis(text: str) -> Genesis:
    """Parse and validate a genesis TOML document."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GenesisError(f"genesis is not valid TOML: {e}") from None
    return genesis_from_dict(doc)


def genesis_to_dict(g: Genesis) -> dict[str, Any]:
    def plain(obj: Any) -> Any:
        if isinstance(obj, Struct):
            return {f: plain(getattr(obj, f)) for f, _ in obj._WIRE_FIELDS}
        if isinstance(obj, tuple):
            return [plain(x) for x in obj]
        if isinstance(obj, bytes):
            return obj.hex()
        return obj

    return plain(g)


# --------------------------------------------------------------------------- defaults

_WHOLE = 2**62 - 1


def default_markets(funding_interval_ms: int = 3_600_000) -> tuple[Market, ...]:
    """BTC-PERP and ETH-PERP with the parameters of a mainstream perpetuals venue."""
    tiers = (
        LeverageTier(1_000_000 * 10**QUOTE_DECIMALS, 50_000, 25_000),  # ≤ $1M: 20×
        LeverageTier(10_000_000 * 10**QUOTE_DECIMALS, 100_000, 50_000),  # ≤ $10M: 10×
        LeverageTier(_WHOLE, 200_000, 100_000),  # above: 5×
    )
    common: dict[str, Any] = {
        "leverage_tiers": tiers,
        "maker_fee_ppm": 200,
        "taker_fee_ppm": 500,
        "liquidation_fee_ppm": 5_000,
        "funding_interval_ms": funding_interval_ms,
        "funding_clamp_ppm": 5_000,
        "oracle_staleness_ms": 10_000,
        "trigger_slippage_ppm": 50_000,  # 5%
    }
    btc = Market(
        market_id=0,
        symbol="BTC-PERP",
        base_decimals=8,
        tick_size_atoms=100_000,  # $0.1
        lot_size_units=100_000,  # 0.001 BTC
        min_size_lots=1,
        max_size_lots=100_000,
        max_price_ticks=10_000_000,  # $1,000,000
        initial_price_ticks=600_000,  # $60,000
        **common,
    )
    eth = Market(
        market_id=1,
        symbol="ETH-PERP",
        base_decimals=6,
        tick_size_atoms=10_000,  # $0.01
        lot_size_units=10_000,  # 0.01 ETH
        min_size_lots=1,
        max_size_lots=1_000_000,
        max_price_ticks=10_000_000,  # $100,000
        initial_price_ticks=300_000,  # $3,000
        **common,
    )
    return (btc, eth)


def default_timing() -> Timing:
    return Timing(
        view_timeout_ms=1_000,
        view_timeout_max_ms=8_000,
        block_interval_ms=50,
        epoch_views=100,
        max_clock_drift_ms=500,
    )
