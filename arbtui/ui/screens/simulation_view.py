"""Rendering of a :class:`~arbtui.domain.execution.SimulationResult`, shared by the confirm modal
and the simulation modal (one place, so what the operator confirms is what was simulated)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from arbtui.domain.execution import SimulationResult
from arbtui.domain.instruments import Instruments
from arbtui.ui.formatting import fixed, signed


def simulation_table(result: SimulationResult, instruments: Instruments) -> Table:
    table = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
    for name in ("Leg", "Venue", "Side", "Size", "Limit", "Book fills", "VWAP", "Fee"):
        table.add_column(name, justify="left" if name in ("Leg", "Venue", "Side") else "right", no_wrap=True)
    for i, (leg, plan) in enumerate(zip(result.legs, result.spread.legs, strict=True), start=1):
        lst = instruments.listing(leg.venue, leg.market)
        qp = min(lst.qty_precision, 4)
        table.add_row(
            str(i),
            leg.venue,
            Text(leg.side.value.upper(), style="green" if leg.side.value == "buy" else "red"),
            fixed(plan.quantity, qp),
            fixed(leg.limit_price, lst.price_precision),
            fixed(leg.quantity, qp),
            fixed(leg.vwap, lst.price_precision + 2) if leg.vwap is not None else "-",
            fixed(leg.fee, 4),
        )
    return table


def simulation_summary(result: SimulationResult) -> Text:
    text = Text()
    text.append("Fees ", style="bold")
    text.append(fixed(result.fees, 2))
    text.append("    PnL at the current books ", style="bold")
    text.append(signed(result.expected_pnl, 2), style="bold green" if result.expected_pnl > 0 else "bold red")
    text.append("    after the slippage buffer ", style="bold")
    after = result.spread.expected_pnl
    text.append(signed(after, 2), style="bold green" if after > 0 else "bold red")
    text.append(f" ({result.spread.net_bps:+} bp net)")
    text.append("\nWorst case if one leg fails and the other is unwound at the opposite side now: ", style="bold")
    text.append(signed(result.worst_case, 2), style="bold red" if result.worst_case < 0 else "")
    text.append(
        f"  (leg 1 fails: {signed(result.worst_case_first_fails, 2)}, "
        f"leg 2 fails: {signed(result.worst_case_second_fails, 2)})",
        style="dim",
    )
    if result.refusal is not None:
        text.append(f"\nA confirm now would be refused: {result.refusal}", style="bold yellow")
    return text
