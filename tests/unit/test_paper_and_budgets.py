"""Paper trading against a live book, rate budgets, secrets, and the live-trading gate."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from arbtui.assembly import LiveRefused, RunOptions, engine_mode
from arbtui.config import ConfigError, default_config_data, parse_config
from arbtui.domain.book import OrderBook
from arbtui.domain.clock import ManualClock
from arbtui.domain.fees import FeeSchedule
from arbtui.domain.instruments import Listing, Market, MarketKind
from arbtui.domain.orders import OrderRequest, OrderStatus, Side, TimeInForce
from arbtui.venues.base import UnknownOrder
from arbtui.venues.live import PaperTrader
from arbtui.venues.ratelimit import RateBudget, kraken_cancel_cost
from arbtui.venues.secrets import Secret, SecretsError, load_credentials, read_secrets_file, redact

D = Decimal
MARKET = Market("BTC-USD", "BTC", "USD", MarketKind.SPOT, None, None)
LISTING = Listing("kraken", "BTC-USD", "BTC/USD", D("0.1"), D("0.0001"), D("0.0001"), 1, 4)
FEES = FeeSchedule(D("0.0016"), D("0.0026"))


def paper(book: OrderBook, clock: ManualClock, balances: dict[str, Decimal] | None = None) -> PaperTrader:
    return PaperTrader(
        "kraken",
        [LISTING],
        {"BTC-USD": MARKET},
        lambda m: book if m == "BTC-USD" else None,
        lambda m: FEES,
        balances if balances is not None else {"USD": D("1000000"), "BTC": D("10")},
        clock,
    )


def a_book() -> OrderBook:
    book = OrderBook()
    book.apply_snapshot(
        [(D("99.9"), D("1")), (D("99.8"), D("2"))],
        [(D("100.0"), D("0.5")), (D("100.1"), D("1")), (D("100.5"), D("5"))],
        1,
    )
    return book


def req(cid: str, side: Side, qty: str, limit: str, tif: TimeInForce = TimeInForce.IOC) -> OrderRequest:
    return OrderRequest(cid, "kraken", "BTC-USD", side, D(qty), D(limit), tif)


async def test_paper_ioc_walks_the_book_up_to_its_limit_and_pays_taker_fees() -> None:
    clock = ManualClock(5)
    trader = paper(a_book(), clock)
    rep = await trader.place_order(req("a1", Side.BUY, "2", "100.1"))
    assert rep.status is OrderStatus.EXPIRED and rep.filled_quantity == D("1.5")
    assert [(f.price, f.quantity) for f in rep.fills] == [(D("100.0"), D("0.5")), (D("100.1"), D("1"))]
    assert rep.fee == FEES.fee(D("100.0"), D("0.5")) + FEES.fee(D("100.1"), D("1"))
    assert rep.average_price == (D("100.0") * D("0.5") + D("100.1")) / D("1.5")
    bal = await trader.balances()
    assert bal["BTC"] == D("11.5") and bal["USD"] == D("1000000") - D("150.1") - rep.fee


async def test_paper_does_not_take_the_same_liquidity_twice_until_the_book_updates() -> None:
    clock = ManualClock(5)
    book = a_book()
    trader = paper(book, clock)
    first = await trader.place_order(req("a1", Side.BUY, "0.5", "100.0"))
    second = await trader.place_order(req("a2", Side.BUY, "0.5", "100.0"))
    assert first.status is OrderStatus.FILLED and second.filled_quantity == 0
    book.apply_update([], [(D("100.0"), D("0.7"))], 6)
    trader.on_book("BTC-USD", book)
    third = await trader.place_order(req("a3", Side.BUY, "0.5", "100.0"))
    assert third.status is OrderStatus.FILLED


async def test_paper_fok_is_all_or_nothing_and_funds_are_checked() -> None:
    clock = ManualClock(5)
    trader = paper(a_book(), clock, {"USD": D("100"), "BTC": D("0")})
    fok = await trader.place_order(req("f1", Side.BUY, "10", "100.5", TimeInForce.FOK))
    assert fok.status is OrderStatus.REJECTED and "insufficient funds" in (fok.reason or "")
    rich = paper(a_book(), clock)
    fok = await rich.place_order(req("f2", Side.BUY, "10", "100.5", TimeInForce.FOK))
    assert fok.status is OrderStatus.EXPIRED and fok.filled_quantity == 0
    sell = await trader.place_order(req("s1", Side.SELL, "1", "99.9"))
    assert sell.status is OrderStatus.REJECTED  # no BTC to sell


async def test_paper_gtc_rests_fills_as_maker_when_the_book_trades_through_and_cancels() -> None:
    clock = ManualClock(5)
    book = a_book()
    trader = paper(book, clock)
    rep = await trader.place_order(req("g1", Side.BUY, "1", "99.9", TimeInForce.GTC))
    assert rep.status is OrderStatus.OPEN
    assert (await trader.balances())["USD"] == D("1000000") - D("99.9")  # reserved
    book.apply_update([], [(D("99.9"), D("0.4"))], 7)  # an ask appears at our price
    trader.on_book("BTC-USD", book)
    rep = await trader.order_status("g1")
    assert rep.status is OrderStatus.PARTIALLY_FILLED and rep.filled_quantity == D("0.4")
    assert rep.fills[0].liquidity.value == "maker" and rep.fee == FEES.fee(D("99.9"), D("0.4"), taker=False)
    rep = await trader.cancel_order("g1")
    assert rep.status is OrderStatus.CANCELLED and rep.filled_quantity == D("0.4")
    with pytest.raises(UnknownOrder):
        await trader.order_status("nope")


async def test_paper_rejects_off_grid_orders_and_orders_before_the_first_book() -> None:
    clock = ManualClock(5)
    trader = paper(a_book(), clock)
    assert (await trader.place_order(req("t1", Side.BUY, "1", "100.05"))).status is OrderStatus.REJECTED
    assert (await trader.place_order(req("t2", Side.BUY, "0.00005", "100"))).status is OrderStatus.REJECTED
    empty = PaperTrader("kraken", [LISTING], {"BTC-USD": MARKET}, lambda m: None, lambda m: FEES, {}, clock)
    rep = await empty.place_order(req("t3", Side.BUY, "1", "100"))
    assert rep.status is OrderStatus.REJECTED and "no live book" in (rep.reason or "")


async def test_rate_budget_makes_requests_wait_for_decay_instead_of_failing() -> None:
    clock = ManualClock(0)
    budget = RateBudget("kraken:BTC/USD", limit=3, decay_per_s=1, clock=clock)
    for _ in range(3):
        assert await budget.acquire() == 0.0
    assert budget.wait_s(1) == pytest.approx(1.0)
    await clock.advance(500_000_000)
    assert budget.wait_s(1) == pytest.approx(0.5)
    budget.charge(kraken_cancel_cost(2.0))  # a cancel 2 s after placing costs 8
    assert budget.level() == pytest.approx(10.5)
    view = budget.view()
    assert view.limit == 3 and view.used == pytest.approx(10.5)
    budget.observe_remaining(0)
    assert budget.level() >= 3
    assert [kraken_cancel_cost(s) for s in (1, 7, 12, 30, 60, 200, 400)] == [8, 6, 5, 4, 2, 1, 0]


async def test_rate_budget_acquire_sleeps_on_the_injected_clock() -> None:
    import asyncio

    clock = ManualClock(0)
    budget = RateBudget("b", limit=1, decay_per_s=2, clock=clock)
    await budget.acquire()
    task = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)
    assert not task.done()
    await clock.advance(600_000_000)
    assert await task == pytest.approx(0.5, abs=0.01)
    assert budget.waits == 1


def test_secrets_never_print_and_are_redacted() -> None:
    s = Secret("kraken-secret-value-123")
    assert "kraken-secret" not in f"{s} {s!r} {[s]}"
    assert redact("venue said: bad key kraken-secret-value-123") == "venue said: bad key ***"
    assert s.reveal() == "kraken-secret-value-123"


def test_secrets_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text('[kraken]\napi_key = "k-123456"\napi_secret = "c2VjcmV0c2VjcmV0"\n')
    path.chmod(0o644)
    with pytest.raises(SecretsError, match="mode 0644.*chmod 600"):
        read_secrets_file(path)
    path.chmod(0o600)
    creds = load_credentials({"kraken": "kraken"}, path, environ={})
    assert creds["kraken"].complete("kraken") and creds["kraken"].source == str(path)
    env = {"ARBTUI_KRAKEN_API_KEY": "from-env-key"}
    creds = load_credentials({"kraken": "kraken"}, path, environ=env)
    assert creds["kraken"].require("api_key").reveal() == "from-env-key"  # the environment wins
    assert "environment" in creds["kraken"].source
    bad = tmp_path / "bad.toml"
    bad.write_text('[kraken]\napi_key = "unterminated\n')
    bad.chmod(0o600)
    with pytest.raises(SecretsError) as exc:
        read_secrets_file(bad)
    assert "unterminated" not in str(exc.value) and str(bad) in str(exc.value)


def _real_config(**trading: object) -> dict[str, object]:
    data = default_config_data()
    data = {k: v for k, v in data.items()}
    data["mode"] = "paper"
    venues = dict(data["venues"])  # type: ignore[call-overload]
    venues["kraken"] = {
        "kind": "kraken",
        "maker_fee": "0.0025",
        "taker_fee": "0.0040",
        "paper": {"balances": {"USD": "1000"}},
    }
    data["venues"] = venues
    if trading:
        data["trading"] = trading
    return data


def test_config_reads_real_venues_and_refuses_secrets_and_plain_urls() -> None:
    cfg = parse_config(_real_config(), "t.toml")
    kraken = cfg.venue("kraken")
    assert kraken.real is not None and kraken.real.ws_url == "wss://ws.kraken.com/v2"
    assert kraken.real.paper_balances == {"USD": D("1000")}
    data = _real_config()
    data["venues"]["kraken"]["api_secret"] = "oops"  # type: ignore[index]
    data["venues"]["kraken"]["ws_url"] = "ws://example.com/v2"  # type: ignore[index]
    data["venues"]["kraken"]["depth"] = 20  # type: ignore[index]
    with pytest.raises(ConfigError) as exc:
        parse_config(data, "t.toml")
    text = str(exc.value)
    assert "t.toml" in text and "venues.kraken.api_secret" in text and "looks like a secret" in text
    assert "oops" not in text
    assert "venues.kraken.ws_url" in text and "wss://" in text
    assert "venues.kraken.depth" in text
    data = _real_config()
    data["mode"] = "sim"
    with pytest.raises(ConfigError, match='expected "paper" because venues kraken are real'):
        parse_config(data, "t.toml")


def test_live_needs_the_flag_the_config_and_the_keys() -> None:
    cfg = parse_config(_real_config(), "t.toml")
    assert engine_mode(cfg, RunOptions(), {}) == "paper"
    with pytest.raises(LiveRefused) as exc:
        engine_mode(cfg, RunOptions(live=True), {})
    assert "[trading] live = true" in str(exc.value) and "ARBTUI_KRAKEN_API_KEY" in str(exc.value)
    cfg = parse_config(_real_config(live=True), "t.toml")
    creds = load_credentials({"kraken": "kraken"}, None, environ={"ARBTUI_KRAKEN_API_KEY": "abcdefg"})
    with pytest.raises(LiveRefused, match="ARBTUI_KRAKEN_API_SECRET") as exc:
        engine_mode(cfg, RunOptions(live=True), creds)
    assert "abcdefg" not in str(exc.value)
    creds = load_credentials(
        {"kraken": "kraken"}, None, environ={"ARBTUI_KRAKEN_API_KEY": "abcdefg", "ARBTUI_KRAKEN_API_SECRET": "c2VjcmV0"}
    )
    assert engine_mode(cfg, RunOptions(live=True), creds) == "live"
    assert engine_mode(cfg, RunOptions(live=False), creds) == "paper"
    assert os.environ.get("ARBTUI_KRAKEN_API_KEY") is None  # nothing leaked into the process


def test_listings_whose_lots_divide_each_other_are_accepted_in_any_order() -> None:
    def cfg(lot_a: str, lot_b: str) -> dict[str, object]:
        data = default_config_data()
        data["markets"]["BTC-USD"]["venues"]["kraken"]["lot_size"] = lot_a  # type: ignore[index]
        data["markets"]["BTC-USD"]["venues"]["coinbase"]["lot_size"] = lot_b  # type: ignore[index]
        return data

    parse_config(cfg("0.001", "0.0001"), "t.toml")
    parse_config(cfg("0.0001", "0.001"), "t.toml")
    with pytest.raises(ConfigError, match="lot sizes 0.0002 and 0.0003 must divide each other"):
        parse_config(cfg("0.0003", "0.0002"), "t.toml")
