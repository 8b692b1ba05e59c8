"""The analytics pane: what it shows matches the engine, its history is per engine-second and
bounded, it redraws only on news, and it survives any size."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

import arbtui.ui
from arbtui.assembly import build_engine
from arbtui.config import default_config
from arbtui.domain.clock import NS_PER_MS, NS_PER_S, ManualClock
from arbtui.engine.engine import Engine
from arbtui.ui.widgets.analytics_pane import AnalyticsPane

START_NS = 1_795_617_000 * NS_PER_S
CENT = Decimal("0.01")
BLOCK_START = "/* analytics pane"
BLOCK_END = "/* end analytics pane */"


def _pane_css() -> str:
    """The pane's block of app.tcss alone: it must parse by itself, whatever the rest holds."""
    text = (Path(arbtui.ui.__file__).parent / "app.tcss").read_text(encoding="utf-8")
    start, end = text.index(BLOCK_START), text.index(BLOCK_END)
    return text[start : end + len(BLOCK_END)]


class PaneApp(App[None]):
    def __init__(self, engine: Engine, history: int = 120) -> None:
        super().__init__()
        self.engine = engine
        self.history = history

    def compose(self) -> ComposeResult:
        yield AnalyticsPane(self.engine, history=self.history)


class StyledPaneApp(PaneApp):
    # Height and border come from the console's layout (#analytics); here the pane fills the screen.
    CSS = _pane_css() + "\nAnalyticsPane { height: 1fr; border: round $panel-lighten-2; }\n"


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[tuple[Engine, ManualClock]]:
    clock = ManualClock(START_NS)
    engine, _ = build_engine(default_config(), clock, tmp_path / "j.sqlite")
    await engine.start()
    try:
        yield engine, clock
    finally:
        await engine.stop()


async def _run(clock: ManualClock, pane: AnalyticsPane, seconds: int, step_ns: int = NS_PER_S) -> None:
    """Advance engine time, sampling the pane as the app's flush would (every ``step_ns``)."""
    end = clock.now_ns() + seconds * NS_PER_S
    while clock.now_ns() < end:
        await clock.advance(step_ns)
        pane.sample(clock.now_ns())


def _ms(ns: int | None) -> str:
    assert ns is not None
    return str((Decimal(ns) / NS_PER_MS).quantize(Decimal("0.1")))


def _shown_money(plain: str, label: str) -> Decimal:
    match = re.search(rf"{label} ([+-][\d,]+\.\d{{2}})", plain)
    assert match is not None, f"no {label} figure in:\n{plain}"
    return Decimal(match.group(1).replace(",", ""))


async def test_pane_shows_the_engine_session(session: tuple[Engine, ManualClock]) -> None:
    engine, clock = session
    engine.set_armed(True)
    app = StyledPaneApp(engine)
    async with app.run_test(size=(60, 20)) as pilot:
        pane = app.query_one(AnalyticsPane)
        await _run(clock, pane, 20)
        await pilot.pause()
        plain = pane.content_text().plain
        a = engine.executor.analytics
        assert a.pairs_completed > 0, "armed for 20 s, the demo market should complete pairs"

        assert _shown_money(plain, "realized") == a.realized_pnl.quantize(CENT)
        assert _shown_money(plain, "expected") == a.expected_pnl.quantize(CENT)
        assert f"completed/confirmed {a.pairs_completed}/{a.pairs_confirmed}" in plain
        assert f"capture {a.capture_rate * 100:.2f}%" in plain
        assert re.search(rf"±1 \S{sum(1 for s in a.slippage_bps if abs(s) <= 1)} ", plain)

        lines = plain.split("\n")
        for venue in engine.venues:
            assert venue in plain
            series = a.ack_latency[venue]
            assert f"{_ms(series.p(50))}/{_ms(series.p(99))}" in plain
            (row,) = [line for line in lines if line.startswith(venue) and "/s" in line]
            assert row.endswith(" OK")
            assert f" {pane.feed_rate_history(venue)[-1]}/s" in row
            (integrity,) = [line for line in lines if line.startswith(venue) and "/" not in line]
            counters = engine.venue_counters(venue)
            assert integrity.split()[1:] == [
                str(counters[k]) for k in ("frames", "integrity_failures", "resyncs", "reconnects", "malformed")
            ]
        assert "TRIPPED" not in plain

        # Market health: every market is listed, with the spread and touch sizes of its books.
        for market in engine.instruments.markets:
            assert market in plain
        book = engine.book("kraken", "BTC-USD")
        assert book is not None
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None and ask is not None
        places = engine.instruments.listing("kraken", "BTC-USD").price_precision
        spread = str((ask[0] - bid[0]).quantize(Decimal(1).scaleb(-places)))
        btc = next(i for i, line in enumerate(lines) if line.startswith("BTC-USD "))
        (btc_kraken,) = [line for line in lines[btc : btc + 2] if " kraken " in line]
        assert btc_kraken.split()[-3] == spread
        assert int(btc_kraken.split()[-2]) > 0  # book updates per second

        # Twenty engine-seconds, twenty points; one per second, the newest at the last sample.
        history = pane.pnl_history
        assert len(history) == 20
        assert [t for t, _, _ in history] == [START_NS + (i + 1) * NS_PER_S for i in range(20)]
        assert history[-1][1:] == (a.realized_pnl, a.expected_pnl)
        assert len(pane.feed_rate_history("kraken")) == 19  # a rate needs two samples

        # What is on screen is the same text, from the top.
        first = "".join(segment.text for segment in pane.render_line(0))
        assert first.startswith("PnL  realized ")


async def test_history_is_per_engine_second_and_bounded(session: tuple[Engine, ManualClock]) -> None:
    engine, clock = session
    app = PaneApp(engine, history=8)
    async with app.run_test(size=(60, 20)):
        pane = app.query_one(AnalyticsPane)
        pane.sample(clock.now_ns())
        assert len(pane.pnl_history) == 1
        # The app samples at 10 Hz: more samples within the same engine-second add nothing.
        for _ in range(3):
            await clock.advance(300 * NS_PER_MS)
            pane.sample(clock.now_ns())
            pane.sample(clock.now_ns())
            assert len(pane.pnl_history) == 1
        await clock.advance(100 * NS_PER_MS)  # the next engine-second starts
        pane.sample(clock.now_ns())
        assert len(pane.pnl_history) == 2

        await _run(clock, pane, 20, step_ns=100 * NS_PER_MS)
        history = pane.pnl_history
        assert len(history) == 8
        assert len(pane.feed_rate_history("coinbase")) == 8
        seconds = [t // NS_PER_S for t, _, _ in history]
        assert seconds == list(range(seconds[-1] - 7, seconds[-1] + 1))
        assert seconds[-1] == clock.now_ns() // NS_PER_S


async def test_redraws_only_on_news(session: tuple[Engine, ManualClock]) -> None:
    engine, clock = session
    app = StyledPaneApp(engine)
    async with app.run_test(size=(60, 20)):
        pane = app.query_one(AnalyticsPane)
        await _run(clock, pane, 3)
        redraws = pane.redraws
        for _ in range(10):  # a second's worth of flushes with engine time standing still
            pane.sample(clock.now_ns())
        assert pane.redraws == redraws

        # A breaker trips mid-second: shown at the next flush, not a second later.
        breaker = engine.executor.breakers["polymarket"]
        for _ in range(3):
            breaker.record(clock.now_ns(), True)
        assert breaker.tripped
        pane.sample(clock.now_ns())
        assert pane.redraws == redraws + 1
        plain = pane.content_text().plain
        assert re.search(r"^polymarket .* TRIPPED$", plain, re.MULTILINE)
        assert f"tripped: {breaker.reason} (trips 1)" in plain
        assert pane.has_class("-tripped")

        engine.reset_breaker("polymarket")
        pane.sample(clock.now_ns())
        assert "TRIPPED" not in pane.content_text().plain
        assert not pane.has_class("-tripped")


async def test_any_size_crops_or_scrolls_never_crashes(session: tuple[Engine, ManualClock]) -> None:
    engine, clock = session
    engine.set_armed(True)
    app = StyledPaneApp(engine)
    async with app.run_test(size=(60, 20)) as pilot:
        pane = app.query_one(AnalyticsPane)
        await _run(clock, pane, 5)
        await pilot.pause()
        # The content is taller than the pane: focused, the keys scroll it.
        assert pane.max_scroll_y > 0
        pane.focus()
        await pilot.press("end")
        await pilot.pause()
        assert pane.scroll_y == pane.max_scroll_y
        await pilot.press("home")
        await pilot.pause()
        assert pane.scroll_y == 0

        for size in ((12, 4), (3, 3), (200, 60)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            await _run(clock, pane, 1)
            await pilot.pause()
            for y in range(pane.size.height):
                assert pane.render_line(y).cell_length == pane.size.width

        # With height to spare the PnL plots grow taller (two series above "capture").
        lines = pane.content_text().plain.split("\n")
        capture = next(i for i, line in enumerate(lines) if line.startswith("capture"))
        assert capture > 3
