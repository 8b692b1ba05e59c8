"""Orders: the one :class:`OrderRequest` every venue accepts, and what venues report back.

The seed code had two connectors with two different ``place_order`` signatures, and crashed at the
moment of trading. Here there is exactly one request value and one ``place_order(request)`` in the
Venue protocol (:mod:`arbtui.venues.base`); each venue module maps it to its own wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum


class Side(Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class TimeInForce(Enum):
    GTC = "gtc"  # rests until filled or cancelled
    IOC = "ioc"  # fills what it can at once, the rest expires (Polymarket calls it FAK)
    FOK = "fok"  # fills entirely at once or not at all


class OrderStatus(Enum):
    """A venue's view of one order."""

    OPEN = "open"  # accepted, resting, nothing filled
    PARTIALLY_FILLED = "partially_filled"  # resting with a partial fill
    FILLED = "filled"
    CANCELLED = "cancelled"  # cancelled, possibly after a partial fill
    EXPIRED = "expired"  # IOC/FOK remainder, possibly after a partial fill
    REJECTED = "rejected"  # never accepted; nothing filled

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.EXPIRED, OrderStatus.REJECTED})


class Liquidity(Enum):
    MAKER = "maker"
    TAKER = "taker"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """Everything needed to place one order, on any venue."""

    client_order_id: str
    venue: str
    market: str  # canonical market id; the venue maps it to its own symbol
    side: Side
    quantity: Decimal
    limit_price: Decimal
    time_in_force: TimeInForce = TimeInForce.IOC

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError(f"order {self.client_order_id}: quantity must be positive, got {self.quantity}")
        if self.limit_price <= 0:
            raise ValueError(f"order {self.client_order_id}: limit price must be positive, got {self.limit_price}")


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of an order."""

    client_order_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal  # in the quote currency
    liquidity: Liquidity
    ts_ns: int


@dataclass(frozen=True, slots=True)
class OrderReport:
    """The state of one order as the venue reports it: the reply to place, cancel and status."""

    client_order_id: str
    venue: str
    venue_order_id: str | None
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal
    average_price: Decimal | None
    fee: Decimal
    ts_ns: int
    reason: str | None = None  # why it was rejected or expired, in the venue's words
    fills: tuple[Fill, ...] = ()

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity
