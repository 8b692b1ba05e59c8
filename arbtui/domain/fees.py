"""Fee schedules.

Kraken and Coinbase charge a rate on the notional (``price * quantity * rate``). Polymarket charges
takers on fee-enabled markets ``shares * rate * p * (1 - p)`` (docs.polymarket.com/trading/fees), so a
fee near 0 or 1 is tiny and one at 0.5 is largest. Both are exact Decimal arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from arbtui.domain.money import ONE, ZERO


class FeeModel(Enum):
    NOTIONAL = "notional"  # rate * price * quantity (Kraken, Coinbase)
    PROBABILITY = "probability"  # rate * quantity * p * (1 - p) (Polymarket takers)


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    maker_rate: Decimal
    taker_rate: Decimal
    model: FeeModel = FeeModel.NOTIONAL

    def fee(self, price: Decimal, quantity: Decimal, *, taker: bool = True) -> Decimal:
        """Fee in quote currency for one fill of ``quantity`` at ``price``."""
        rate = self.taker_rate if taker else self.maker_rate
        if rate == ZERO:
            return ZERO
        if self.model is FeeModel.NOTIONAL:
            return price * quantity * rate
        return quantity * rate * price * (ONE - price)

    def taker_fee_per_unit(self, price: Decimal) -> Decimal:
        return self.fee(price, ONE, taker=True)
