"""Exact conversion between human prices, sizes and amounts and the ledger's integers.

Why this module exists: traders think in "buy 0.25 BTC at 60123.5", the ledger only knows
integer ticks, lots and quote atoms (ARCHITECTURE.md, "Integers only"). A conversion that rounds
would silently trade a different price or size than the one typed, so every conversion here is
exact or it fails with a :class:`UnitError` that says what was wrong and what the step is.

Theory of operation: a human value is parsed into a :class:`~decimal.Decimal` (never a float)
and split into an integer coefficient and a power of ten, so every later step is integer
arithmetic with no rounding context involved. For a market:

* price (quote per whole base unit) -> ticks: ``price * 10**QUOTE_DECIMALS / tick_size_atoms``
* size (base units) -> lots: ``size * 10**base_decimals / lot_size_units``
* amount (quote) -> atoms: ``amount * 10**QUOTE_DECIMALS``

each of which must come out a whole number inside the market's range. The reverse direction
(:func:`ticks_to_price`, :func:`format_price`, ...) is exact too, and formats with exactly as
many decimals as the step has, so ``format_price(m, price_to_ticks(m, "60123.5")) == "60123.5"``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from lockstep.consensus.genesis import QUOTE_DECIMALS, Genesis, Market

MAX_INPUT_CHARS = 64
"""A human number longer than this is a typo or an attack, not a price."""

MAX_EXPONENT = 40
"""Bound on the decimal exponent accepted (``1e40``), so ``1e999999999`` cannot allocate a
billion-digit integer; 10^40 is far beyond any uint64 quantity at any step size."""

U64_MAX = 2**64 - 1


class UnitError(ValueError):
    """A human value is not a number, not a multiple of its step, or out of range."""


def parse_decimal(value: str | int | Decimal, what: str) -> Decimal:
    """Parse a human number strictly: finite, non-negative, no floats, bounded size."""
    if isinstance(value, float | bool):
        raise UnitError(f"{what} must be given as a decimal string, not a {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        if not text or len(text) > MAX_INPUT_CHARS:
            raise UnitError(f"{what} {value!r} is not a number")
        try:
            d = Decimal(text)
        except InvalidOperation:
            raise UnitError(f"{what} {value!r} is not a number") from None
    else:
        d = Decimal(value)
    if not d.is_finite():
        raise UnitError(f"{what} {value} is not a finite number")
    if d.is_signed() and d != 0:
        raise UnitError(f"{what} {value} must not be negative")
    digits, exponent = d.as_tuple()[1:]
    assert isinstance(exponent, int)
    # Trailing zeros after the point ("1.000…0") do not make a number small; drop them first.
    while exponent < 0 and len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    if abs(exponent) > MAX_EXPONENT:
        raise UnitError(f"{what} {value} has an exponent beyond ±{MAX_EXPONENT}")
    return d


def _ratio(d: Decimal) -> tuple[int, int]:
    """``d`` as an exact (numerator, power-of-ten denominator) pair of integers."""
    _, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits))) if digits else 0
    if exponent >= 0:
        return coefficient * 10**exponent, 1
    return coefficient, 10**-exponent


def _to_steps(d: Decimal, scale: int, step: int) -> int | None:
    """``d * scale / step`` if it is a whole number, else None. Pure integer arithmetic."""
    num, den = _ratio(d)
    num *= scale
    den *= step
    if num % den:
        return None
    return num // den


def _plain(d: Decimal) -> str:
    """Fixed-point text of a Decimal (``'1E+1'`` -> ``'10'``), for error messages."""
    return format(d, "f")


def _format_fixed(numerator: int, decimals: int, shown: int) -> str:
    """``numerator / 10**decimals`` with exactly ``shown`` decimals (caller ensures exactness)."""
    whole, frac = divmod(numerator, 10**decimals)
    if shown == 0:
        assert frac == 0
        return str(whole)
    digits = str(frac).rjust(decimals, "0")
    assert int(digits[shown:] or "0") == 0, "value has more decimals than its step"
    return f"{whole}.{digits[:shown]}"


def _step_decimals(step: int, decimals: int) -> int:
    """Decimals needed to show multiples of ``step / 10**decimals`` exactly."""
    while decimals > 0 and step % 10 == 0:
        step //= 10
        decimals -= 1
    return decimals


# --------------------------------------------------------------------------- prices


def price_to_ticks(market: Market, price: str | int | Decimal) -> int:
    """Human price (quote per whole base unit) -> ticks, exact and in ``1..max_price_ticks``."""
    d = parse_decimal(price, "price")
    ticks = _to_steps(d, 10**QUOTE_DECIMALS, market.tick_size_atoms)
    if ticks is None:
        raise UnitError(
            f"price {_plain(d)} is not a multiple of the tick size {_plain(market.tick_size)} "
            f"for {market.symbol}"
        )
    if ticks == 0:
        raise UnitError(f"price must be positive for {market.symbol}")
    if ticks > market.max_price_ticks:
        top = format_price(market, market.max_price_ticks)
        raise UnitError(f"price {_plain(d)} is above the maximum {top} for {market.symbol}")
    return ticks


def ticks_to_price(market: Market, ticks: int) -> Decimal:
    """Ticks -> human price, exact (a Decimal built from text, so no rounding context applies)."""
    return Decimal(format_price(market, ticks))


def format_price(market: Market, ticks: int) -> str:
    """Ticks -> price text with exactly the tick size's decimals (``'60123.5'``)."""
    _check_int(ticks, "ticks")
    shown = _step_decimals(market.tick_size_atoms, QUOTE_DECIMALS)
    return _format_fixed(ticks * market.tick_size_atoms, QUOTE_DECIMALS, shown)


# --------------------------------------------------------------------------- sizes


def size_to_lots(market: Market, size: str | int | Decimal) -> int:
    """Human size (base units) -> lots, exact and in ``min_size_lots..max_size_lots``."""
    d = parse_decimal(size, "size")
    lots = _to_steps(d, 10**market.base_decimals, market.lot_size_units)
    if lots is None:
        raise UnitError(
            f"size {_plain(d)} is not a multiple of the lot size {_plain(market.lot_size)} "
            f"for {market.symbol}"
        )
    if lots < market.min_size_lots:
        least = format_size(market, market.min_size_lots)
        raise UnitError(f"size {_plain(d)} is below the minimum {least} for {market.symbol}")
    if lots > market.max_size_lots:
        most = format_size(market, market.max_size_lots)
        raise UnitError(f"size {_plain(d)} is above the maximum {most} for {market.symbol}")
    return lots


def lots_to_size(market: Market, lots: int) -> Decimal:
    """Lots -> human size in base units, exact."""
    return Decimal(format_size(market, lots))


def format_size(market: Market, lots: int) -> str:
    """Lots -> size text with exactly the lot size's decimals (``'0.250'`` for 0.001 lots)."""
    _check_int(lots, "lots")
    shown = _step_decimals(market.lot_size_units, market.base_decimals)
    return _format_fixed(lots * market.lot_size_units, market.base_decimals, shown)


# --------------------------------------------------------------------------- money


def amount_to_atoms(amount: str | int | Decimal) -> int:
    """Human quote amount (``'100.5'`` USD) -> quote atoms, exact, positive, within uint64."""
    d = parse_decimal(amount, "amount")
    atoms = _to_steps(d, 10**QUOTE_DECIMALS, 1)
    if atoms is None:
        raise UnitError(
            f"amount {_plain(d)} has more than {QUOTE_DECIMALS} decimals "
            f"(the smallest unit is {format_amount(1)})"
        )
    if atoms == 0:
        raise UnitError("amount must be positive")
    if atoms > U64_MAX:
        raise UnitError(f"amount {_plain(d)} is too large")
    return atoms


def atoms_to_amount(atoms: int) -> Decimal:
    """Quote atoms -> human amount, exact (may be negative, e.g. a PnL)."""
    return Decimal(format_amount(atoms))


def format_amount(atoms: int) -> str:
    """Quote atoms -> text with all QUOTE_DECIMALS decimals (``'-12.500000'``)."""
    _check_int(atoms, "atoms", signed=True)
    text = _format_fixed(abs(atoms), QUOTE_DECIMALS, QUOTE_DECIMALS)
    return f"-{text}" if atoms < 0 else text


def _check_int(value: int, what: str, signed: bool = False) -> None:
    if type(value) is not int or (value < 0 and not signed):
        raise UnitError(f"{what} must be a non-negative integer, got {value!r}")


# --------------------------------------------------------------------------- markets


def find_market(genesis: Genesis, name: str) -> Market:
    """A market by symbol (case-insensitive, ``btc-perp``) or by numeric id (``0``)."""
    wanted = name.strip().upper()
    for m in genesis.markets:
        if m.symbol.upper() == wanted or (wanted.isdigit() and int(wanted) == m.market_id):
            return m
    known = ", ".join(m.symbol for m in genesis.markets)
    raise UnitError(f"unknown market {name!r}; this chain has {known}")
