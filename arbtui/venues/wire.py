"""What every venue parser shares: the malformed-frame error and reading decimal strings."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any


class MalformedFrame(ValueError):
    """A frame that cannot be understood; it is counted and skipped, never applied in part."""


def decimal_string(value: Any, what: str) -> Decimal:
    """A non-negative finite decimal sent as a string (prices and sizes on Coinbase and Polymarket)."""
    if not isinstance(value, str):
        raise MalformedFrame(f"{what} must be a decimal string")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise MalformedFrame(f"{what} is not a number: {value!r}") from None
    if not d.is_finite() or d < 0:
        raise MalformedFrame(f"{what} is impossible: {value!r}")
    return d
