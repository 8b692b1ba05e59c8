"""The analytics pane: how the session is going, sampled once per engine-second.

PnL (realized against expected, plotted on one shared scale), capture, slippage, per-venue ack
latency, feed rate and feed integrity, breakers, and the health of every market's books.

The app calls :meth:`AnalyticsPane.sample` on every flush (10 Hz). The pane takes at most one
history point per second of *engine* time (never the wall clock, so replays and tests see the
same history), and rebuilds its lines only then, or when a figure it shows between seconds has
changed (PnL, pair counts, a breaker). Everything is drawn as plain lines of a Rich ``Text``
through the line API: the pane scrolls (it is focusable) when the panel is shorter than its
content, and crops when it is narrower.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from arbtui.domain.clock import NS_PER_MS, NS_PER_S
from arbtui.domain.money import ZERO
from arbtui.engine.engine import Engine
from arbtui.ui.formatting import fixed, signed

HISTORY = 120  # history points kept (one per engine-second at most: two minutes)
PLOT_ROWS_MAX = 4  # rows per PnL series when the pane has height to spare
QTY_PLACES_MAX = 4
CENT = Decimal("0.01")
TENTH = Decimal("0.1")
_BLOCKS = " ▁▂▃▄▅▆▇█"  # index = eighths of a cell filled
_LEVELS_PER_ROW = 8
# Integrity failures: a checksum (Kraken), sequence (Coinbase) or best bid/ask (Polymarket) check failed.
COUNTER_KEYS = ("frames", "integrity_failures", "resyncs", "reconnects", "malformed")
_COUNTER_HEADS = ("frames", "integ", "resyn", "recon", "malf")
_COUNTER_WIDTHS = (8, 6, 6, 6, 5)
# Slippage buckets in bps (+ = worse than the detector's VWAP): (label, upper bound inclusive).
_SLIP_BUCKETS: tuple[tuple[str, Decimal | None], ...] = (
    ("<-10", Decimal(-10)),
    ("<-1", Decimal(-1)),
    ("±1", Decimal(1)),
    (">1", Decimal(10)),
    (">10", None),
)
LABEL_W = 5  # "real " / "exp  " before the PnL plot


@dataclass(frozen=True, slots=True)
class _VenueRow:
    name: str
    ack_p50_ns: int | None
    ack_p99_ns: int | None
    feed_rates: tuple[int, ...]  # book updates per engine-second, oldest first
    counters: tuple[int | None, ...]  # in COUNTER_KEYS order; None when the venue does not count it
    tripped: bool
    reason: str
    trips: int


@dataclass(frozen=True, slots=True)
class _MarketRow:
    market: str
    venue: str
    spread: Decimal | None  # best ask - best bid (negative when crossed)
    bid_qty: Decimal | None
    ask_qty: Decimal | None
    updates_per_s: int | None  # None until two samples have been taken
    price_places: int
    qty_places: int


@dataclass(frozen=True, slots=True)
class _Figures:
    """Everything the pane shows, read from the engine at one instant."""

    realized: Decimal
    expected: Decimal
    capture_rate: Decimal
    completed: int
    confirmed: int
    slippage: tuple[int, ...]  # counts per _SLIP_BUCKETS
    venues: tuple[_VenueRow, ...]
    markets: tuple[_MarketRow, ...]
    limits: tuple[tuple[str, str, str], ...] = ()  # real venues: (venue, taker fee and its source, budgets)


class AnalyticsPane(ScrollView, can_focus=True):
    """Session analytics for one engine; fed by :meth:`sample` from the app's flush.

    A :class:`~textual.scroll_view.ScrollView` (so a :class:`~textual.widget.Widget`) drawing its
    own lines: scrolling is Textual's (keys when focused, the mouse wheel), layout is ours.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "analytics-pane--title",
        "analytics-pane--label",
        "analytics-pane--realized",
        "analytics-pane--expected",
        "analytics-pane--bar",
        "analytics-pane--ok",
        "analytics-pane--bad",
        "analytics-pane--warn",
    }

    def __init__(self, engine: Engine, *, history: int = HISTORY, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.border_title = "Analytics"
        if history < 1:
            raise ValueError("history must keep at least one point")
        self._engine = engine
        self._history = history
        self._times: deque[int] = deque(maxlen=history)
        self._realized: deque[Decimal] = deque(maxlen=history)
        self._expected: deque[Decimal] = deque(maxlen=history)
        self._feed_rates: dict[str, deque[int]] = {v: deque(maxlen=history) for v in engine.venues}
        self._last_second: int | None = None
        self._last_ns = 0
        self._last_feed: dict[str, int] = {}
        self._last_seq: dict[tuple[str, str], int] = {}
        self._update_rates: dict[tuple[str, str], int] = {}
        self._shown_key: tuple[object, ...] | None = None
        self._figures: _Figures | None = None
        self._lines: list[Text] = [Text("no samples yet")]
        self._strips: list[Strip] = []
        self._styles: dict[str, Style] = {}  # component styles, until the next style update
        self._base: Style | None = None
        self._natural_width = 50
        self.redraws = 0  # times the lines were rebuilt from the engine (tests check the throttle)

    # --- public API ---------------------------------------------------------------------------
    def sample(self, now_ns: int) -> None:
        """Called on every flush with the engine clock's time; cheap unless there is news.

        A new engine-second adds one history point and redraws; within a second the pane redraws
        only if PnL, pair counts or a breaker changed.
        """
        second = now_ns // NS_PER_S
        if self._last_second is not None and second < self._last_second:
            self._reset_history()  # the clock went back (a replay restarted): a new timeline
        if self._last_second is None or second > self._last_second:
            self._take_sample(now_ns)
            self._last_second = second
            self._redraw()
        elif self._volatile_key() != self._shown_key:
            self._redraw()

    @property
    def pnl_history(self) -> tuple[tuple[int, Decimal, Decimal], ...]:
        """(engine ns, cumulative realized, cumulative expected) per sampled second, oldest first."""
        return tuple(zip(self._times, self._realized, self._expected, strict=True))

    def feed_rate_history(self, venue: str) -> tuple[int, ...]:
        """Book updates per second of ``venue``'s feed, one per sampled second after the first."""
        return tuple(self._feed_rates.get(venue, ()))

    def content_text(self) -> Text:
        """Every line of the pane (not only those scrolled into view), as one Text."""
        return Text("\n").join(self._lines)

    # --- sampling -----------------------------------------------------------------------------
    def _reset_history(self) -> None:
        self._times.clear()
        self._realized.clear()
        self._expected.clear()
        for rates in self._feed_rates.values():
            rates.clear()
        self._last_second = None
        self._last_feed.clear()
        self._last_seq.clear()
        self._update_rates.clear()

    def _take_sample(self, now_ns: int) -> None:
        engine = self._engine
        analytics = engine.executor.analytics
        elapsed = now_ns - self._last_ns if self._last_second is not None else 0
        self._times.append(now_ns)
        self._realized.append(analytics.realized_pnl)
        self._expected.append(analytics.expected_pnl)
        for venue in engine.venues:
            count = engine.feed_counts.get(venue, 0)
            if elapsed > 0 and venue in self._last_feed:
                delta = max(0, count - self._last_feed[venue])
                self._feed_rates.setdefault(venue, deque(maxlen=self._history)).append(delta * NS_PER_S // elapsed)
            self._last_feed[venue] = count
        for venue, market in self._listings():
            book = engine.book(venue, market)
            if book is None:
                continue
            key = (venue, market)
            seq = book.sequence
            previous = self._last_seq.get(key)
            if elapsed > 0 and previous is not None:
                # A replaced book (reconnect) starts counting again from zero.
                delta = seq - previous if seq >= previous else seq
                self._update_rates[key] = delta * NS_PER_S // elapsed
            self._last_seq[key] = seq
        self._last_ns = now_ns

    def _listings(self) -> list[tuple[str, str]]:
        inst = self._engine.instruments
        return [
            (venue, market)
            for market in inst.markets
            for venue in inst.venues_for_market(market)
            if venue in self._engine.venues
        ]

    def _volatile_key(self) -> tuple[object, ...]:
        """The figures that can change between samples and must not wait a second to show."""
        ex = self._engine.executor
        a = ex.analytics
        return (
            a.realized_pnl,
            a.expected_pnl,
            a.pairs_completed,
            a.pairs_confirmed,
            tuple((b.tripped, b.reason) for b in ex.breakers.values()),
        )

    def _read_figures(self) -> _Figures:
        engine = self._engine
        ex = engine.executor
        a = ex.analytics
        slip = [0] * len(_SLIP_BUCKETS)
        for bps in a.slippage_bps:
            slip[_slip_bucket(bps)] += 1
        venues: list[_VenueRow] = []
        for name in engine.venues:
            series = a.ack_latency.get(name)
            counters = engine.venue_counters(name)
            breaker = ex.breakers.get(name)
            venues.append(
                _VenueRow(
                    name,
                    series.p(50) if series is not None else None,
                    series.p(99) if series is not None else None,
                    tuple(self._feed_rates.get(name, ())),
                    tuple(counters.get(k) for k in COUNTER_KEYS),
                    breaker is not None and breaker.tripped,
                    breaker.reason if breaker is not None else "",
                    breaker.trips if breaker is not None else 0,
                )
            )
        limits: list[tuple[str, str, str]] = []
        for name, real in engine.venues.items():  # real venues only: simulated ones have no budgets
            budgets = getattr(real, "budgets", None)
            source = getattr(real, "fee_source", None)
            if not callable(budgets) or source is None:
                continue
            taker = real.fees(real.listings[0].market).taker_rate if real.listings else Decimal(0)
            used = " ".join(f"{b.name.split(':', 1)[-1]} {b.used:g}/{b.limit:g}" for b in budgets())
            limits.append((name, f"{taker * 100:.3f}% ({source})", used or "-"))
        markets: list[_MarketRow] = []
        for venue, market in self._listings():
            listing = engine.instruments.listing(venue, market)
            book = engine.book(venue, market)
            bid = book.best_bid() if book is not None else None
            ask = book.best_ask() if book is not None else None
            markets.append(
                _MarketRow(
                    market,
                    venue,
                    ask[0] - bid[0] if bid is not None and ask is not None else None,
                    bid[1] if bid is not None else None,
                    ask[1] if ask is not None else None,
                    self._update_rates.get((venue, market)),
                    listing.price_precision,
                    min(listing.qty_precision, QTY_PLACES_MAX),
                )
            )
        return _Figures(
            a.realized_pnl,
            a.expected_pnl,
            a.capture_rate,
            a.pairs_completed,
            a.pairs_confirmed,
            tuple(slip),
            tuple(venues),
            tuple(markets),
            tuple(limits),
        )

    # --- drawing ------------------------------------------------------------------------------
    def _redraw(self) -> None:
        self._shown_key = self._volatile_key()
        self._figures = self._read_figures()
        self.redraws += 1
        self.set_class(any(v.tripped for v in self._figures.venues), "-tripped")
        self._relayout()

    def _relayout(self) -> None:
        """Lay the last figures out at the current size (no engine reads)."""
        if not self.is_mounted:
            return  # laid out by on_mount, once the component styles can be resolved
        if self._figures is not None:
            region = self.scrollable_content_region
            self._lines = self._compose_lines(self._figures, region.width, region.height)
        self._strips = []  # rendered lazily, with the current styles
        self._natural_width = max((line.cell_len for line in self._lines), default=0)
        # Width 0: the lines are laid out to fit, so the pane never scrolls sideways.
        self.virtual_size = Size(0, len(self._lines))
        self.refresh()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"analytics-pane--{name}", partial=True)
        return style

    def _compose_lines(self, f: _Figures, width: int, height: int) -> list[Text]:
        width = max(width, 1)
        title, label = self._style("title"), self._style("label")
        ok, bad, warn, bar = self._style("ok"), self._style("bad"), self._style("warn"), self._style("bar")
        realized_style, expected_style = self._style("realized"), self._style("expected")

        head = Text(no_wrap=True)
        head.append("PnL", title)
        head.append("  realized ", label)
        head.append(signed(f.realized.quantize(CENT), 2), realized_style)
        head.append("  expected ", label)
        head.append(signed(f.expected.quantize(CENT), 2), expected_style)
        if len(self._times) > 1:
            head.append(f"  {(self._times[-1] - self._times[0]) // NS_PER_S}s", label)

        stats = Text(no_wrap=True)
        stats.append("capture ", label)
        stats.append(f"{fixed(f.capture_rate * 100, 2)}%")
        stats.append("  completed/confirmed ", label)
        stats.append(f"{f.completed}/{f.confirmed}")

        slip = Text(no_wrap=True)
        slip.append("slip bps", label)
        most = max(f.slippage, default=0)
        if not most:
            slip.append("  no fills yet", label)
        else:
            for (name, _), count in zip(_SLIP_BUCKETS, f.slippage, strict=True):
                slip.append(f" {name} ", label)
                slip.append(_bar_char(count, most), bar)
                slip.append(str(count), label if count == 0 else Style())

        name_w = min(max((len(v.name) for v in f.venues), default=5), 12)
        venue_head = Text(no_wrap=True)
        venue_head.append("venue".ljust(name_w), title)
        venue_head.append(" ack p50/p99ms", title)
        fixed_w = name_w + 1 + 13 + 1 + 1 + 6 + 1 + 7
        spark_w = max(0, width - fixed_w)
        venue_head.append(" " + "feed/s".ljust(spark_w + 7) + " brk", title)
        venue_lines: list[Text] = [venue_head]
        for v in f.venues:
            row = Text(no_wrap=True)
            row.append(v.name[:name_w].ljust(name_w))
            row.append(" " + f"{_ms(v.ack_p50_ns)}/{_ms(v.ack_p99_ns)}".rjust(13))
            row.append(" ")
            row.append(_spark(v.feed_rates, spark_w), bar)
            rate = str(v.feed_rates[-1]) if v.feed_rates else "-"
            row.append(f" {rate.rjust(4)}/s ")
            row.append("TRIPPED" if v.tripped else "OK", bad if v.tripped else ok)
            venue_lines.append(row)
            if v.tripped:
                why = Text(no_wrap=True)
                why.append("  tripped: ", label)
                why.append(v.reason or "no reason given", bad)
                why.append(f" (trips {v.trips})", label)
                venue_lines.append(why)

        integrity_head = Text(no_wrap=True)
        integrity_head.append("integrity".ljust(name_w), title)
        for head_name, w in zip(_COUNTER_HEADS, _COUNTER_WIDTHS, strict=True):
            integrity_head.append(head_name.rjust(w), title)
        integrity_lines: list[Text] = [integrity_head]
        for v in f.venues:
            row = Text(no_wrap=True)
            row.append(v.name[:name_w].ljust(name_w))
            for i, (value, w) in enumerate(zip(v.counters, _COUNTER_WIDTHS, strict=True)):
                figure = "-" if value is None else str(value)
                # Frames are good news; any gap, checksum failure, reconnect or malformed frame is not.
                style = bad if i > 0 and value else (label if i > 0 else Style())
                row.append(figure.rjust(w), style)
            integrity_lines.append(row)

        market_w = min(max((len(m.market) for m in f.markets), default=6), 14)
        market_head = Text(no_wrap=True)
        market_head.append("market".ljust(market_w), title)
        market_head.append(" " + "venue".ljust(name_w), title)
        market_head.append(" spread".rjust(9) + " upd/s bid/ask qty", title)
        market_lines: list[Text] = [market_head]
        previous_market = ""
        for m in f.markets:
            row = Text(no_wrap=True)
            row.append((m.market if m.market != previous_market else "").ljust(market_w))
            previous_market = m.market
            row.append(" " + m.venue[:name_w].ljust(name_w))
            spread = "-" if m.spread is None else fixed(m.spread, m.price_places)
            row.append(" " + spread.rjust(8), warn if m.spread is not None and m.spread <= 0 else Style())
            row.append(" " + ("-" if m.updates_per_s is None else str(m.updates_per_s)).rjust(5))
            row.append(f" {_qty(m.bid_qty, m.qty_places)}/{_qty(m.ask_qty, m.qty_places)}")
            market_lines.append(row)

        limit_lines: list[Text] = []
        if f.limits:  # taker fee in force (venue = the account's live rate) and rate budgets, used/limit
            limit_head = Text(no_wrap=True)
            limit_head.append("venue".ljust(name_w) + " taker fee          budgets used/limit", title)
            limit_lines.append(limit_head)
            for name, fee, used in f.limits:
                limit_lines.append(Text(f"{name[:name_w].ljust(name_w)} {fee.ljust(18)} {used}", no_wrap=True))
        body = [stats, slip, *venue_lines, *integrity_lines, *market_lines, *limit_lines]
        base = 1 + 2 + len(body)  # head, one row per PnL series, the rest
        rows = min(PLOT_ROWS_MAX, 1 + max(0, height - base) // 2)
        plot_w = max(0, width - LABEL_W)
        realized, expected = list(self._realized), list(self._expected)
        shown = realized[-plot_w:] + expected[-plot_w:] if plot_w else []
        lo = min([ZERO, *shown])
        hi = max([ZERO, *shown])
        plot: list[Text] = []
        for name, series, style in (("real", realized, realized_style), ("exp", expected, expected_style)):
            for i, line in enumerate(_plot(series, lo, hi, plot_w, rows)):
                row = Text(no_wrap=True)
                row.append((name if i == rows - 1 else "").ljust(LABEL_W), label)
                row.append(line, style)
                plot.append(row)
        return [head, *plot, *body]

    # --- Textual hooks ------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._base is None:
            self._base = self.rich_style  # resolved once per style change: it walks the ancestors
        base = self._base
        if not self._strips and self._lines:
            console = self.app.console
            strips = []
            for line in self._lines:
                text = line.copy()
                # A span, not Text(style=...): Text.render drops the base style of a Text without spans.
                text.stylize_before(base)
                strips.append(Strip(list(text.render(console)), text.cell_len))
            self._strips = strips
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        if index >= len(self._strips):
            return Strip.blank(width, base)
        return self._strips[index].crop_extend(scroll_x, scroll_x + width, base).apply_offsets(scroll_x, index)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        """For ``width: auto``: the widest line last laid out."""
        return self._natural_width

    def on_mount(self) -> None:
        self._relayout()

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()

    def notify_style_update(self) -> None:
        """A theme or class change re-resolves the component styles baked into the lines."""
        super().notify_style_update()
        self._styles.clear()
        self._base = None
        if self._figures is not None:
            self._relayout()
        else:
            self._strips = []


def _slip_bucket(bps: Decimal) -> int:
    for i, (_, upper) in enumerate(_SLIP_BUCKETS):
        if upper is None:
            return i
        # "<-10" and "<-1" are open above; "±1" and ">1" include their upper bound.
        if (bps < upper) if i < 2 else (bps <= upper):
            return i
    return len(_SLIP_BUCKETS) - 1


def _ms(ns: int | None) -> str:
    """Nanoseconds as milliseconds to 0.1 ms, exactly (half-even)."""
    if ns is None:
        return "-"
    return str((Decimal(ns) / NS_PER_MS).quantize(TENTH))


def _qty(qty: Decimal | None, places: int) -> str:
    """A size at most ``places`` decimals, trailing zeros dropped: 0.25, 3, 1200."""
    if qty is None:
        return "-"
    text = fixed(qty, places).replace(",", "")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _bar_char(count: int, most: int) -> str:
    """One cell of a histogram bar: a dot for zero, else an eighth-block scaled to ``most``."""
    if count <= 0 or most <= 0:
        return "·"
    return _BLOCKS[max(1, -(-count * _LEVELS_PER_ROW // most))]


def _spark(values: Sequence[int], width: int) -> str:
    """A one-row block sparkline of the last ``width`` values, scaled from zero to their maximum."""
    if width <= 0:
        return ""
    shown = [Decimal(v) for v in values[-width:]]
    return _plot(shown, ZERO, max([ZERO, *shown]), width, 1)[0]


def _plot(values: Sequence[Decimal], lo: Decimal, hi: Decimal, width: int, rows: int) -> list[str]:
    """A block plot ``rows`` high of the last ``width`` values on the scale ``lo``..``hi``, right
    aligned (the newest point at the right edge); top row first. Exact: Decimal, no float.

    Every point shows at least one eighth, so a flat series still draws a visible baseline.
    """
    if width <= 0:
        return [""] * rows
    shown = list(values[-width:])
    levels = rows * _LEVELS_PER_ROW
    span = hi - lo
    heights = [1 + int(((v - lo) * (levels - 1) / span).to_integral_value()) if span > 0 else 1 for v in shown]
    lines = []
    for r in range(rows - 1, -1, -1):
        floor = r * _LEVELS_PER_ROW
        cells = "".join(_BLOCKS[max(0, min(_LEVELS_PER_ROW, h - floor))] for h in heights)
        lines.append(cells.rjust(width))
    return lines
