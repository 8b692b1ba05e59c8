"""The confirm is a quote: what the operator was shown is what is sent, or less, or nothing
(issue 11, item 1). Test layer (a): the engine facade on the seeded demo and a ManualClock.

Every venue is wrapped so the test sees each order request as it is handed to the venue, and so a
test can replace the book the executor reads at send time (the detector keeps its own books).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal

import orjson
import pytest

from arbtui.domain.book import OrderBook
from arbtui.domain.clock import NS_PER_MS
from arbtui.domain.execution import ConfirmRefused, PairState, Quote, QuoteIssued
from arbtui.domain.orders import OrderReport, OrderRequest, Side
from arbtui.engine.execution import ConfirmRefusedError
from arbtui.venues.base import Venue
from arbtui.venues.simulated import SimulatedVenue
from tests.unit.test_executor import (
    MARKET_STEP_NS,
    DelegatingVenue,
    Run,
    Starter,
    quiet_config,
    raw_actions,
    start,
)

__all__ = ["start"]  # the fixture, used by name

D = Decimal


class WireVenue(DelegatingVenue):
    """Records every order request handed to the venue; ``override`` replaces the book the
    executor reads (for the one market it names)."""

    def __init__(self, inner: SimulatedVenue) -> None:
        super().__init__(inner)
        self.requests: list[OrderRequest] = []
        self.override: dict[str, OrderBook] = {}

    def book(self, market: str) -> OrderBook | None:
        return self.override.get(market) or self.inner.book(market)

    async def place_order(self, request: OrderRequest) -> OrderReport:
        self.requests.append(request)
        return await super().place_order(request)


def wire(v: SimulatedVenue) -> Venue:
    return WireVenue(v)


WIRED = {"kraken": wire, "coinbase": wire, "polymarket": wire}


def wires(run: Run) -> dict[str, WireVenue]:
    out = {}
    for name, venue in run.engine.venues.items():
        inner = getattr(venue, "inner", venue)
        if not isinstance(inner, WireVenue):
            inner = venue
        assert isinstance(inner, WireVenue)
        out[name] = inner
    return out


def sent_requests(run: Run) -> list[OrderRequest]:
    return [r for w in wires(run).values() for r in w.requests]


def shown(quote: Quote) -> list[tuple[str, str, Side, Decimal, Decimal]]:
    return [(leg.venue, leg.market, leg.side, leg.quantity, leg.limit_price) for leg in quote.legs]


def as_sent(requests: Iterable[OrderRequest]) -> list[tuple[str, str, Side, Decimal, Decimal]]:
    return [(r.venue, r.market, r.side, r.quantity, r.limit_price) for r in requests]


def book_of(levels_bids: list[tuple[str, str]], levels_asks: list[tuple[str, str]], ts_ns: int) -> OrderBook:
    book = OrderBook()
    book.apply_snapshot(
        [(D(p), D(q)) for p, q in levels_bids],
        [(D(p), D(q)) for p, q in levels_asks],
        ts_ns,
    )
    return book


def thinned(real: OrderBook, side: Side, limit: Decimal, keep: Decimal, ts_ns: int) -> OrderBook:
    """``real`` with the side a ``side`` order takes holding only ``keep`` within ``limit``."""
    taken = real.taken_side(side)
    left = keep
    levels: list[tuple[Decimal, Decimal]] = []
    for price, qty in taken:
        if not taken.is_better_or_equal(price, limit) or left <= 0:
            break
        take = min(qty, left)
        levels.append((price, take))
        left -= take
    other = list(real.taken_side(side.opposite))
    book = OrderBook()
    if side is Side.SELL:  # a sell takes the bids
        book.apply_snapshot(levels, other, ts_ns)
    else:
        book.apply_snapshot(other, levels, ts_ns)
    return book


async def test_every_confirm_of_a_seeded_run_sends_exactly_the_legs_the_modal_showed(start: Starter) -> None:
    """The operator's path (quote, then confirm that quote id), over a minute of the seeded demo, and
    ARMED mode's: every order handed to a venue equals a leg of the quote it was confirmed for."""
    run = await start(quiet_config(risk={"max_pairs_in_flight": 1}), wrap=WIRED)
    quotes: dict[str, Quote] = {}  # pair id -> the quote it was sent for
    for _ in range(600):
        await run.clock.advance(MARKET_STEP_NS * 10)
        if run.engine.executor.in_flight():
            continue
        for spread in run.engine.detector.spreads():
            if not spread.pays or spread.opportunity_id is None:
                continue
            quote = run.engine.quote(spread.opportunity_id)
            assert quote is not None
            try:
                pair_id = run.engine.confirm(quote.quote_id)
            except ConfirmRefusedError:
                continue
            quotes[pair_id] = quote
            break
    await run.run_until(lambda: not run.engine.executor.in_flight(), limit_s=60)
    assert len(quotes) >= 5, "the seeded minute should give several confirms"

    by_cid = {r.client_order_id: r for r in sent_requests(run)}
    for pair_id, quote in quotes.items():
        view = run.view(pair_id)
        assert view.quote_id == quote.quote_id
        requests = [by_cid[leg.client_order_id] for leg in view.entry_legs]
        assert as_sent(requests) == shown(quote)  # the same legs, the same size, the same limits
        # The journal keeps the quote shown beside what was sent for it.
        ((legs_json, qid),) = await run.rows("SELECT legs, quote_id FROM quotes WHERE pair_id=?", (pair_id,))
        assert qid == quote.quote_id
        stored = [
            (x["venue"], x["market"], x["side"], D(x["quantity"]), D(x["limit_price"])) for x in orjson.loads(legs_json)
        ]
        legs = await run.rows(
            "SELECT venue, market, side, quantity, limit_price FROM legs WHERE pair_id=? AND role='entry' ORDER BY idx",
            (pair_id,),
        )
        assert stored == [(v, m, s, D(q), D(p)) for v, m, s, q, p in legs]
        assert [(v, m, Side(s), q, p) for v, m, s, q, p in stored] == shown(quote)

    # ARMED: the same quote path, no modal.
    armed_from = len(run.engine.executor.pairs)
    run.engine.set_armed(True)
    for _ in range(300):
        await run.clock.advance(MARKET_STEP_NS * 10)
    run.engine.set_armed(False)
    await run.run_until(lambda: not run.engine.executor.in_flight(), limit_s=60)
    armed = list(run.engine.executor.pairs.values())[armed_from:]
    assert armed, "ARMED mode should have confirmed something in 30 s"
    by_cid = {r.client_order_id: r for r in sent_requests(run)}
    for pair in armed:
        assert pair.quote is not None and pair.quote.purpose == "armed"
        assert as_sent(by_cid[leg.cid] for leg in pair.entries) == shown(pair.quote)
        assert await run.rows("SELECT purpose FROM quotes WHERE pair_id=?", (pair.pair_id,)) == [("armed",)]


async def test_a_quote_whose_edge_vanished_sends_nothing_and_says_what_the_books_give_now(start: Starter) -> None:
    run = await start(wrap=WIRED)
    spread = await run.paying()
    assert spread.opportunity_id is not None
    quote = run.engine.quote(spread.opportunity_id)
    assert quote is not None and quote.sendable
    sell = next(leg for leg in quote.legs if leg.side is Side.SELL)
    # The bids the sell leg would take are gone: the best bid is now well under the quote's limit.
    now = run.clock.now_ns()
    low = sell.limit_price * D("0.99")
    wires(run)[sell.venue].override[sell.market] = book_of(
        [(str(low), "1000")], [(str(sell.limit_price * 2), "1")], now
    )
    before = run.sent()
    with pytest.raises(ConfirmRefusedError) as exc:
        run.engine.confirm(quote.quote_id)
    assert exc.value.refusal.code == "EDGE_GONE"
    assert "now give" in exc.value.refusal.detail and f"quoted {quote.expected_pnl:+.2f}" in exc.value.refusal.detail
    assert run.sent() == before and sent_requests(run) == []
    assert run.engine.executor.pairs == {}
    assert [(e.target, e.code) for e in run.of(ConfirmRefused)] == [(quote.quote_id, "EDGE_GONE")]
    await run.clock.advance(MARKET_STEP_NS)
    assert await run.rows("SELECT * FROM pairs") == []
    assert (await raw_actions(run))[-1][:2] == ("confirm", quote.quote_id)
    assert (await raw_actions(run))[-1][2].startswith("refused EDGE_GONE: ")

    # The refusal offers a re-quote: a new quote on the books as they are (here: it does not pay).
    again = run.engine.quote(spread.opportunity_id)
    assert again is not None and again.quote_id != quote.quote_id


async def test_thinner_books_at_the_quote_limits_send_less_never_more_never_worse(start: Starter) -> None:
    run = await start(wrap=WIRED)
    spread = await run.paying()
    assert spread.opportunity_id is not None
    quote = run.engine.quote(spread.opportunity_id)
    assert quote is not None and quote.sendable
    sell = next(leg for leg in quote.legs if leg.side is Side.SELL)
    venue = wires(run)[sell.venue]
    real = venue.inner.book(sell.market)
    assert real is not None
    half = (quote.quantity / 2).quantize(D("0.0001"))
    venue.override[sell.market] = thinned(real, Side.SELL, sell.limit_price, half, run.clock.now_ns())
    pair_id = run.engine.confirm(quote.quote_id)
    await run.settle(pair_id)
    requests = sent_requests(run)
    assert len(requests) == 2
    for request, leg in zip(sorted(requests, key=lambda r: r.client_order_id), quote.legs, strict=True):
        assert (request.venue, request.side, request.limit_price) == (leg.venue, leg.side, leg.limit_price)
        assert 0 < request.quantity <= half < leg.quantity
    assert requests[0].quantity == requests[1].quantity
    (detail,) = [d for a, t, d in await raw_actions(run) if a == "confirm"]
    assert detail == f"{pair_id} {requests[0].quantity} of {quote.quantity}"


async def test_an_expired_quote_refuses_and_a_quote_is_sent_at_most_once(start: Starter) -> None:
    run = await start(wrap=WIRED)
    spread = await run.paying()
    assert spread.opportunity_id is not None
    stale = run.engine.quote(spread.opportunity_id)
    assert stale is not None and stale.expires_ns - stale.created_ns == 2000 * NS_PER_MS  # the default TTL
    await run.run_until(lambda: run.clock.now_ns() > stale.expires_ns)  # (expiry is checked before the books)
    with pytest.raises(ConfirmRefusedError) as exc:
        run.engine.confirm(stale.quote_id)
    assert exc.value.refusal.code == "QUOTE_EXPIRED" and "re-quote" in exc.value.refusal.detail
    assert sent_requests(run) == []

    spread = await run.paying(group=None, limit_s=120)
    assert spread.opportunity_id is not None
    fresh = run.engine.quote(spread.opportunity_id)
    assert fresh is not None
    pair_id = run.engine.confirm(fresh.quote_id)
    with pytest.raises(ConfirmRefusedError) as again:
        run.engine.confirm(fresh.quote_id)
    assert again.value.refusal.code == "QUOTE_USED"
    with pytest.raises(ConfirmRefusedError) as unknown:
        run.engine.confirm("Q-999999")
    assert unknown.value.refusal.code == "QUOTE_UNKNOWN"
    assert (await run.settle(pair_id)).state is PairState.COMPLETED
    assert as_sent(sent_requests(run)) == shown(fresh) and list(run.engine.executor.pairs) == [pair_id]


async def test_opening_cancelling_simulating_and_confirming_are_distinct_journaled_actions(start: Starter) -> None:
    run = await start(quiet_config(execution={"quote_ttl_ms": 60_000}), wrap=WIRED)
    spread = await run.paying()
    oid = spread.opportunity_id
    assert oid is not None
    opened = run.engine.quote(oid)  # the confirm modal opens
    assert opened is not None
    run.engine.cancel_quote(opened.quote_id)  # n
    simulated = run.engine.simulate(oid)  # s
    assert simulated is not None
    second = run.engine.quote(oid)  # the modal again
    assert second is not None
    pair_id = run.engine.confirm(second.quote_id)  # y
    await run.settle(pair_id)
    acts = await raw_actions(run)
    assert [(a, t) for a, t, _ in acts] == [
        ("quote", opened.quote_id),
        ("confirm_cancel", opened.quote_id),
        ("simulate", simulated.quote_id),
        ("quote", second.quote_id),
        ("confirm", second.quote_id),
    ]
    assert acts[0][2].startswith(f"for {oid}; ") and acts[1][2] == "nothing sent"
    assert acts[4][2] == f"{pair_id} {second.quantity} of {second.quantity}"
    rows = await run.rows("SELECT quote_id, purpose, pair_id FROM quotes ORDER BY created_ns, quote_id")
    assert sorted(rows) == sorted(
        [
            (opened.quote_id, "confirm", None),
            (simulated.quote_id, "simulate", None),
            (second.quote_id, "confirm", pair_id),
        ]
    )
    issued = [e.quote.quote_id for e in run.of(QuoteIssued)]
    assert issued == [opened.quote_id, simulated.quote_id, second.quote_id]


async def test_legs_beyond_the_quote_are_refused_even_if_the_recheck_were_wrong(start: Starter) -> None:
    """The last guard before the wire: whatever priced the legs, more than the quote showed (or
    another limit) is refused with nothing sent."""
    run = await start(wrap=WIRED)
    spread = await run.paying()
    assert spread.opportunity_id is not None
    quote = run.engine.quote(spread.opportunity_id)
    assert quote is not None
    book = run.engine.executor.quotes
    honest = book.recheck

    def larger(q: Quote, now: int) -> object:
        checked = honest(q, now)
        assert not isinstance(checked, Exception) and isinstance(checked, tuple)
        sending, priced = checked
        legs = tuple(replace(leg, quantity=leg.quantity * 2) for leg in sending.legs)
        return replace(sending, legs=legs, quantity=sending.quantity * 2), priced

    book.recheck = larger  # type: ignore[method-assign,assignment]
    with pytest.raises(ConfirmRefusedError) as exc:
        run.engine.confirm(quote.quote_id)
    assert exc.value.refusal.code == "QUOTE_MISMATCH"
    assert f"{quote.quote_id} showed" in exc.value.refusal.detail
    await run.clock.advance(MARKET_STEP_NS)
    assert sent_requests(run) == [] and run.engine.executor.pairs == {}


async def test_the_risk_queries_change_nothing(start: Starter) -> None:
    """The console asks "would this be refused?" of every paying row at each refresh: the answer is
    read from the risk ledger and changes nothing in it (it used to drop settled pairs from the open
    set while answering)."""
    run = await start(wrap=WIRED)
    executor = run.engine.executor
    run.engine.set_armed(True)
    for _ in range(100):
        await run.clock.advance(MARKET_STEP_NS * 10)
        if executor.ledger.open:
            break
    run.engine.set_armed(False)
    assert executor.ledger.open, "ARMED mode should have a pair open within 10 s"
    before = (dict(executor.ledger.open), dict(executor.ledger._settled_realized), executor.risk_state())
    for _ in range(50):
        for spread in run.engine.detector.spreads():
            run.engine.would_refuse(spread)
        executor.risk_state()
    assert (dict(executor.ledger.open), dict(executor.ledger._settled_realized), executor.risk_state()) == before
    await run.run_until(lambda: not executor.in_flight(), limit_s=60)
