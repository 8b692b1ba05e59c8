"""The operator's guards cannot be bypassed (issue 11, item 3).

Every way out (``q``, ``ctrl+q``, the palette's Quit) asks while a pair is in flight; ``R`` asks
before releasing the kill switch; an abort that cannot take effect says so; pausing detection
dims the spread figures. App.run_test + Pilot on the seeded demo (STYLE.md layer b).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.color import Color as RichColor
from rich.segment import Segment
from textual.command import CommandPalette
from textual.geometry import Region
from textual.message import Message
from textual.notifications import Notify
from textual.widget import Widget
from textual.widgets import Static

from arbtui.domain.execution import LegRole, LegState, LegView, PairState, PairView
from arbtui.domain.orders import Side, TimeInForce
from arbtui.ui.abort_notice import describe_abort
from arbtui.ui.app import ENGINE_WORKER, ArbApp
from arbtui.ui.screens.ask_screen import AskScreen
from arbtui.ui.widgets.pairs_pane import PairsPane
from arbtui.ui.widgets.spreads_table import SpreadsTable
from arbtui.venues.simulated import SimulatedVenue
from tests.harness import make_app, warm_up


class Notes:
    """A message hook that keeps every toast's text."""

    def __init__(self) -> None:
        self.toasts: list[str] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.toasts.append(message.notification.message)


def _sim(app: ArbApp, venue: str) -> SimulatedVenue:
    v = app.engine.venues[venue]
    inner = getattr(v, "inner", v)  # the session recorder's wrapper
    assert isinstance(inner, SimulatedVenue)
    return inner


async def _pair_in_flight(pilot: Any, app: ArbApp, clock: Any) -> str:
    """Confirm the leading paying spread with both of its venues slow to answer: the pair stays
    DISPATCHING with both IOC entry legs SENT for as long as the manual clock does not move."""
    await warm_up(app, clock, 16)
    app.main_screen.query_one(SpreadsTable).focus()
    await app.flush()
    await pilot.pause()
    spread = app.main_screen.selected_spread()
    assert spread is not None and spread.pays
    for leg in spread.legs:
        _sim(app, leg.venue).configure_faults(ack_latency_ms=5000)
    await pilot.press("enter")
    await pilot.pause()
    await pilot.press("y")
    await pilot.pause()
    (pair_id,) = app.engine.executor.pairs
    assert [p.pair_id for p in app.engine.executor.in_flight()] == [pair_id]
    await app.flush()
    await pilot.pause()
    return pair_id


async def _palette_searched(app: ArbApp) -> None:
    """Wait for the palette's search workers (not the engine's, which runs until shutdown)."""
    searches = [w for w in app.workers if w.name != ENGINE_WORKER]
    if searches:  # (an empty list would mean "every worker", the engine's included)
        await app.workers.wait_for_complete(searches)


def _venues_closed(app: ArbApp) -> bool:
    return all(v.status.value == "closed" for v in app.engine.venues.values())


# --- every way out asks while a pair is in flight -----------------------------------------------


async def test_ctrl_q_with_a_pair_in_flight_asks_and_only_yes_exits() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _pair_in_flight(pilot, app, clock)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)
        assert "in flight" in app.screen._title
        await pilot.press("ctrl+q")  # again, while asked: no second question stacked
        await pilot.pause()
        assert sum(isinstance(s, AskScreen) for s in app.screen_stack) == 1
        await pilot.press("n")
        await pilot.pause()
        assert app.return_code is None and not isinstance(app.screen, AskScreen)
        assert not _venues_closed(app)

        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.return_code == 0
    assert _venues_closed(app)


async def test_the_palette_quit_is_the_guarded_one() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _pair_in_flight(pilot, app, clock)
        quits = [c for c in app.get_system_commands(app.screen) if c.title == "Quit"]
        assert len(quits) == 1 and "asks first" in quits[0].help  # not "as soon as possible"

        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"quit")
        await _palette_searched(app)
        await pilot.pause()
        await pilot.press("down", "enter")  # the first (only) hit
        await _palette_searched(app)
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)
        assert app.return_code is None
        await pilot.press("n")
        await pilot.pause()
        assert app.return_code is None and not _venues_closed(app)

        quits[0].callback()  # the same entry again, answered yes
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.return_code == 0
    assert _venues_closed(app)


async def test_textual_quit_action_with_nothing_in_flight_leaves_at_once() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 1)
        await app.action_quit()  # what ctrl+q and "app.quit" run
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.return_code == 0
    assert _venues_closed(app)  # through shutdown: the engine stopped, not just the app


# --- R asks before releasing the kill switch ----------------------------------------------------


async def test_resume_asks_and_only_yes_releases_the_kill_switch() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 2)
        await pilot.press("K", "y")
        await pilot.pause()
        assert app.engine.executor.halted
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, AskScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.engine.executor.halted and not isinstance(app.screen, AskScreen)
        await pilot.press("R")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.engine.executor.halted
        await pilot.press("R")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert not app.engine.executor.halted
        rows = await app.engine.journal.query("SELECT action FROM actions WHERE action IN ('kill', 'resume')")
        assert rows == [("kill",), ("resume",)]  # the two no's journaled nothing


# --- an abort says what it can really do --------------------------------------------------------


async def test_abort_of_a_pair_whose_ioc_legs_are_out_says_they_cannot_be_recalled() -> None:
    notes = Notes()
    app, clock = make_app()
    async with app.run_test(size=(120, 40), message_hook=notes) as pilot:
        pair_id = await _pair_in_flight(pilot, app, clock)
        view = app.engine.executor.pairs[pair_id].view()
        assert view.state is PairState.DISPATCHING
        assert {(leg.state, leg.time_in_force) for leg in view.entry_legs} == {(LegState.SENT, TimeInForce.IOC)}
        assert app.main_screen.query_one(PairsPane).selected_pair_id() == pair_id
        await pilot.press("x")
        await pilot.pause()
        expected = f"{pair_id}: both IOC legs are already out and cannot be recalled; any imbalance will be unwound"
        assert expected in notes.toasts
        assert app.bridge.last_notable == expected and app.bridge.notable_style == "warning"
        assert app.engine.executor.pairs[pair_id].abort_requested  # still asked of the engine

        for _ in range(600):  # the legs answer (5 s), or are asked about; the pair ends
            if app.engine.executor.pairs[pair_id].state.is_terminal:
                break
            await clock.advance(100_000_000)
        assert app.engine.executor.pairs[pair_id].state.is_terminal
        final = app.engine.executor.pairs[pair_id].state.value.upper()
        app.main_screen.abort_pair(pair_id)  # e.g. a palette entry listed before it ended
        await pilot.pause()
        assert f"{pair_id} is already final ({final}): nothing to abort" in notes.toasts[-1]


def _leg(venue: str, state: LegState, tif: TimeInForce = TimeInForce.IOC, role: LegRole = LegRole.ENTRY) -> LegView:
    return LegView(
        "cid", "P-3", role, venue, "BTC-USD", Side.BUY, Decimal(1), Decimal(100), tif, state, Decimal(0),
        None, Decimal(0), None, None, None,
    )  # fmt: skip


def _view(state: PairState, *legs: LegView, resolved: bool = False) -> PairView:
    return PairView(
        "P-3", "O-1", "k", "BTC-USD", state, legs, Decimal(0), None, (), 0, None, None, None, resolved=resolved
    )


def test_abort_notice_follows_the_legs_states_and_time_in_force() -> None:
    out = describe_abort(
        "P-3", _view(PairState.DISPATCHING, _leg("kraken", LegState.FILLED), _leg("cb", LegState.SENT)), True
    )
    assert out.text == "P-3: the cb buy IOC leg is already out and cannot be recalled; any imbalance will be unwound"
    assert not out.effective
    resting = _view(PairState.DISPATCHING, _leg("kraken", LegState.ACKED, TimeInForce.GTC), _leg("cb", LegState.SENT))
    out = describe_abort("P-3", resting, True)
    assert out.effective and "cancelling kraken buy (resting)" in out.text and "cannot be recalled" in out.text
    unwinding = _view(
        PairState.UNWINDING,
        _leg("kraken", LegState.FILLED),
        _leg("cb", LegState.EXPIRED),
        _leg("kraken", LegState.SENT, role=LegRole.UNWIND),
    )
    assert (
        "unwind order (kraken buy, IOC) is already out and cannot be recalled"
        in describe_abort("P-3", unwinding, True).text
    )
    unsent = _view(PairState.CONFIRMED, _leg("kraken", LegState.NEW), _leg("cb", LegState.NEW))
    assert describe_abort("P-3", unsent, True).effective
    broken = _view(PairState.BROKEN, _leg("kraken", LegState.FILLED), _leg("cb", LegState.REJECTED))
    text = describe_abort("P-3", broken, False).text
    assert text.startswith("P-3 is already final (BROKEN): nothing to abort") and "resolve" in text
    assert describe_abort("P-9", None, False).text == "P-9: no such pair; nothing to abort"


# --- pausing detection dims the spread figures --------------------------------------------------


def _contrast(widget: Widget, needle: str) -> float:
    """How far the rendered colour of ``needle`` is from its background (0 = invisible)."""
    strips = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
    segments: list[Segment] = [seg for strip in strips for seg in strip if needle in seg.text]
    assert segments, f"{needle!r} is not drawn"
    style = segments[0].style
    assert style is not None and style.color is not None and style.bgcolor is not None
    fg = style.color.get_truecolor()
    bg = (style.bgcolor or RichColor.default()).get_truecolor()
    return float(sum(abs(a - b) for a, b in zip(fg, bg, strict=True)))


async def test_pausing_detection_dims_the_spread_figures_and_unpausing_restores_them() -> None:
    app, clock = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 16)
        await pilot.pause()
        screen = app.main_screen
        table = screen.query_one(SpreadsTable)
        detail = screen.query_one("#spread-detail", Static)
        net = table.get_row_at(0)[1].text  # the leading row's net edge, as drawn
        live = _contrast(table, net)
        detail_text = str(detail.render()).split(":", 1)[0]
        live_detail = _contrast(detail, detail_text)

        await pilot.press("p")
        await pilot.pause()
        assert app.engine.detection_paused
        assert table.has_class("-paused") and detail.has_class("-paused")
        assert table.get_row_at(0)[1].text == net  # the same (frozen) figure...
        assert _contrast(table, net) < 0.7 * live  # ...drawn dimmed
        assert _contrast(detail, detail_text) < 0.7 * live_detail
        assert "PAUSED" in str(table.border_subtitle)

        await pilot.press("p")
        await app.flush()
        await pilot.pause()
        assert not app.engine.detection_paused
        assert not table.has_class("-paused") and not detail.has_class("-paused")
        assert not table.border_subtitle
        assert _contrast(table, table.get_row_at(0)[1].text) == live  # the clock did not move: same row, same look
