"""Rendering of a :class:`~arbtui.domain.execution.Quote`, shared by the confirm modal and the
simulation modal (one place, so what the operator confirms is what was shown).

One row per leg (venue, side, size, limit, VWAP, fee, notional); the size and limit carry every
digit that is sent, and the table fits an 80-column terminal without cutting a figure.
"""

from __future__ import annotations

from decimal import Decimal

from rich.table import Table
from rich.text import Text

from arbtui.domain.clock import NS_PER_MS
from arbtui.domain.execution import Quote
from arbtui.domain.instruments import Instruments
from arbtui.ui.formatting import fixed, signed


def exact(value: Decimal, places: int) -> str:
    """``value`` with at least ``places`` decimals and every digit it has (a size or limit as it is
    sent must not be shown rounded)."""
    exponent = value.as_tuple().exponent
    digits = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return fixed(value, max(places, digits))


def quote_table(quote: Quote, instruments: Instruments) -> Table:
    """Both legs exactly as a confirm sends them: venue, side, size, IOC limit, expected VWAP, fee,
    expected notional."""
    table = Table(box=None, padding=(0, 1), pad_edge=False, show_header=True, header_style="bold")
    for name in ("Leg", "Venue", "Side", "Size", "Limit", "VWAP", "Fee", "Notional"):
        table.add_column(name, justify="left" if name in ("Leg", "Venue", "Side") else "right", no_wrap=True)
    for i, leg in enumerate(quote.legs, start=1):
        lst = instruments.listing(leg.venue, leg.market)
        table.add_row(
            str(i),
            leg.venue,
            Text(leg.side.value.upper(), style="green" if leg.side.value == "buy" else "red"),
            exact(leg.quantity, lst.qty_precision),  # every digit that is sent: never rounded
            exact(leg.limit_price, lst.price_precision),
            fixed(leg.vwap, lst.price_precision + 2) if leg.vwap is not None else "-",
            fixed(leg.fee, 4),
            fixed(leg.notional, 2),
        )
    return table


def quote_summary(quote: Quote, now_ns: int | None = None) -> Text:
    text = Text()
    text.append("Fees ", style="bold")
    text.append(fixed(quote.fees, 2))
    text.append("   PnL ", style="bold")
    text.append(signed(quote.pnl_before_buffer, 2))
    text.append("   after slippage buffer ", style="bold")
    text.append(signed(quote.expected_pnl, 2), style="bold green" if quote.expected_pnl > 0 else "bold red")
    text.append(f" ({quote.net_bps:+} bp net)")
    text.append("\nWorst case (one leg fails, the other unwound now): ", style="bold")
    text.append(signed(quote.worst_case, 2), style="bold red" if quote.worst_case < 0 else "")
    text.append(
        f"\n  leg 1 fails: {signed(quote.worst_case_first_fails, 2)}   "
        f"leg 2 fails: {signed(quote.worst_case_second_fails, 2)}",
        style="dim",
    )
    thin = [i for i, leg in enumerate(quote.legs, start=1) if leg.book_fills < quote.spread.quantity]
    if thin:
        text.append(f"\nSized down to what the books hold within the limits (leg {', '.join(map(str, thin))})", "dim")
    if now_ns is not None:
        left = (quote.expires_ns - now_ns) // NS_PER_MS
        if left >= 0:
            text.append(f"\nQuote {quote.quote_id} valid for {left / 1000:.1f} s", style="dim")
        else:
            text.append(f"\nQuote {quote.quote_id} has EXPIRED: r re-quotes", style="bold yellow")
    if quote.refusal is not None:
        text.append(f"\nA confirm now would be refused: {quote.refusal}", style="bold yellow")
        if quote.refusal_detail:
            text.append(f" ({quote.refusal_detail})", style="yellow")
    return text
