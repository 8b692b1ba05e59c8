"""Exact money: prices, sizes, fees and PnL are :class:`~decimal.Decimal`, never floats.

A price or size goes on the wire through :func:`to_wire`, the one place that renders a value at a
venue's precision. Decimal arithmetic runs in a context with enough digits that no value the
engine handles is ever rounded implicitly.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

# 34 significant digits (IEEE decimal128) leave room for a 1e9 price times a 1e-8 lot times fees.
decimal.getcontext().prec = 34

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)


def to_decimal(value: object) -> Decimal:
    """Turn a config or wire value into a Decimal without passing through binary floats.

    A float is converted through its shortest ``repr`` ("0.1" stays 0.1), which is what a
    person who typed it meant.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):  # float ok: rejecting NaN and infinities
            raise ValueError(f"not a finite number: {value!r}")
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except decimal.InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
        if not d.is_finite():
            raise ValueError(f"not a finite number: {value!r}")
        return d
    raise TypeError(f"not a number: {value!r}")


def precision_of(step: Decimal) -> int:
    """Number of decimal places of a tick or lot size (``0.01`` -> 2, ``5`` -> 0)."""
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def to_wire(value: Decimal, precision: int) -> str:
    """Render ``value`` with exactly ``precision`` decimal places, as venues expect it.

    Raises if the value is not representable at that precision: silently rounding a price or
    a size on its way to a venue is how orders land at the wrong price.
    """
    quantum = Decimal(1).scaleb(-precision)
    rendered = value.quantize(quantum, rounding=ROUND_HALF_EVEN)
    if rendered != value:
        raise ValueError(f"{value} has more than {precision} decimal places")
    return f"{rendered:f}"


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of ``step`` that is <= ``value`` (sizes, sell limits)."""
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Smallest multiple of ``step`` that is >= ``value`` (buy limits)."""
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


def bps(numerator: Decimal, denominator: Decimal) -> Decimal:
    """``numerator / denominator`` in basis points, rounded to 0.01 bp; 0 for a zero denominator."""
    if denominator == 0:
        return ZERO
    return (numerator / denominator * BPS).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
