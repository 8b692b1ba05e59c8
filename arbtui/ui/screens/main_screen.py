"""The main screen: header, spreads, order books, in-flight pairs, analytics, event strip, footer.

Bindings live here (STYLE.md rule 10), each with an id and a tooltip, and are dimmed by
``check_action`` when they cannot apply. Every action is also in the command palette
(:mod:`arbtui.ui.commands`). Panes are flushed by :meth:`MainScreen.flush` in one batch, never
per event. Below 110 columns or 32 rows the panes stack: one shows at a time, ``tab`` cycles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from arbtui.domain.events import Spread
from arbtui.domain.execution import PairView
from arbtui.engine.execution import ConfirmRefusedError
from arbtui.replay.session_format import default_session_path
from arbtui.ui.abort_notice import describe_abort
from arbtui.ui.screens.ask_screen import AskScreen
from arbtui.ui.screens.confirm_screen import ConfirmOutcome, ConfirmScreen
from arbtui.ui.screens.simulation_screen import SimulationScreen
from arbtui.ui.widgets.analytics_pane import AnalyticsPane
from arbtui.ui.widgets.binding_footer import BindingFooter
from arbtui.ui.widgets.books_pane import BooksPane
from arbtui.ui.widgets.pairs_pane import PairsPane
from arbtui.ui.widgets.replay_bar import ReplayBar
from arbtui.ui.widgets.spreads_table import SpreadsTable
from arbtui.ui.widgets.status_header import StatusHeader

if TYPE_CHECKING:
    from arbtui.ui.app import ArbApp

W = TypeVar("W", bound=Widget)

PANES = ("spreads", "books", "pairs", "analytics")


# The actions whose availability (check_action) follows the engine's state or the selection.
_STATEFUL_ACTIONS = (
    "confirm",
    "simulate",
    "abort",
    "kill",
    "resume",
    "toggle_armed",
    "replay_pause",
    "replay_speed",
    "replay_step",
    "toggle_record",
)

_FASTER = "Replay: double the speed"
_SLOWER = "Replay: halve the speed"
_STEP = "Replay (paused): play one event"


class MainScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    BINDINGS = [
        Binding("enter,c", "confirm", "Confirm", id="confirm", tooltip="Confirm the selected opportunity (asks first)"),
        Binding("s", "simulate", "Simulate", id="simulate", tooltip="What a confirm would do now; sends nothing"),
        Binding("x", "abort", "Abort pair", id="abort", tooltip="Abort the selected pair: cancel and unwind"),
        Binding("K", "kill", "Kill", id="kill", tooltip="Kill switch: halt, cancel everything, unwind"),
        Binding("R", "resume", "Resume", id="resume", tooltip="Release the kill switch"),
        Binding("A", "toggle_armed", "Arm", id="arm", tooltip="Toggle ARMED: the engine confirms by itself"),
        Binding("p", "toggle_pause", "Pause", id="pause", tooltip="Pause or resume spread detection"),
        Binding("r", "toggle_record", "Record", id="record", tooltip="Start or stop recording this session to a file"),
        Binding("space", "replay_pause", "Play/Pause", id="replay-pause", tooltip="Replay: pause or play"),
        Binding("plus", "replay_speed(2)", "Faster", id="replay-faster", tooltip=_FASTER, key_display="+"),
        Binding("minus", "replay_speed(0.5)", "Slower", id="replay-slower", tooltip=_SLOWER, key_display="-"),
        Binding("full_stop", "replay_step", "Step", id="replay-step", tooltip=_STEP, key_display="."),
        Binding(
            "tab", "next_pane", "Next pane", id="next-pane", tooltip="Move to the next pane", show=False, priority=True
        ),
        Binding(
            "shift+tab",
            "previous_pane",
            "Previous pane",
            id="previous-pane",
            tooltip="Previous pane",
            show=False,
            priority=True,
        ),
        Binding("slash", "filter", "Filter", id="filter", tooltip="Filter spreads by market"),
        Binding("question_mark", "help", "Help", id="help", tooltip="List every key binding"),
        Binding("q", "quit_app", "Quit", id="quit", tooltip="Stop the engine and leave (asks if pairs are in flight)"),
    ]

    def __init__(self, arb_app: ArbApp) -> None:
        super().__init__()
        self._arb = arb_app
        self._pane = 0
        self._shown_notable = ""
        self.market_filter = ""
        self._bindings_shown: tuple[bool | None, ...] | None = None
        self._widgets: dict[type[Widget], Widget] = {}

    # --- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        engine = self._arb.engine
        yield StatusHeader(id="status")
        if self._arb.replay is not None:
            yield ReplayBar(id="replay-bar")
        with Vertical(id="body"):
            table = SpreadsTable(engine.instruments, id="spreads", classes="pane -current")
            table.border_title = "Spreads (net of taker fees and slippage buffer)"
            yield table
            yield Static("", id="spread-detail")
            with Horizontal(id="lower"):
                books = BooksPane(engine, self._arb.config.ui.book_depth, id="books", classes="pane")
                yield books
                with Vertical(id="side"):
                    pairs = PairsPane(id="pairs", classes="pane")
                    pairs.border_title = "Pairs"
                    yield pairs
                    analytics = AnalyticsPane(engine, id="analytics", classes="pane")
                    analytics.border_title = "Analytics"
                    yield analytics
        yield Input(placeholder="filter markets (enter keeps it, esc clears)", id="filter")
        yield Static("", id="event-strip")
        yield BindingFooter()

    def on_mount(self) -> None:
        self.query_one(SpreadsTable).focus()

    def _one(self, kind: type[W]) -> W:
        """The screen's widget of this kind, looked up once: the panes are composed once and never
        replaced, and the flush and the bindings' checks ask for them ten times a second."""
        found = self._widgets.get(kind)
        if found is None or not found.is_attached:  # (being torn down: NoMatches, as a query says)
            found = self._widgets[kind] = self.query_one(kind)  # raises NoMatches before compose
        assert isinstance(found, kind)
        return found

    # --- selection ---------------------------------------------------------------------------
    def selected_spread(self) -> Spread | None:
        try:
            return self._one(SpreadsTable).selected_spread()
        except NoMatches:
            return None

    def selected_pair(self) -> str | None:
        try:
            return self._one(PairsPane).selected_pair_id()
        except NoMatches:
            return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Dim what cannot apply: None shows the binding disabled."""
        engine = self._arb.engine
        spread = self.selected_spread()
        if action == "confirm":
            return True if spread is not None and spread.pays and not engine.executor.halted else None
        if action == "simulate":
            return True if spread is not None else None
        if action == "abort":
            pid = self.selected_pair()
            pair = engine.executor.pairs.get(pid) if pid else None
            return True if pair is not None and not pair.state.is_terminal else None
        if action == "kill":
            return True if not engine.executor.halted else None
        if action == "resume":
            return True if engine.executor.halted else None
        if action == "toggle_armed":
            return True if not engine.executor.halted or engine.executor.armed else None
        replay = self._arb.replay
        if action in ("replay_pause", "replay_speed"):
            return True if replay is not None else False  # hidden outside a replay
        if action == "replay_step":
            return (True if not replay.paused.is_set() else None) if replay is not None else False
        if action == "toggle_record":
            return True if engine.recorder is not None and replay is None else False
        return True

    def refresh_bindings_if_changed(self) -> None:
        """Refresh the footer only when a binding's availability changed: every refresh recomposes
        the footer (a dozen widgets), which under a busy feed cost more than the rest of a redraw."""
        state = tuple(self.check_action(name, ()) for name in _STATEFUL_ACTIONS)
        if state != self._bindings_shown:
            self._bindings_shown = state
            self.refresh_bindings()

    # --- actions -------------------------------------------------------------------------------
    def action_replay_pause(self) -> None:
        replay = self._arb.replay
        if replay is not None:
            paused = replay.toggle_pause()
            self.notify("Replay paused: . plays one event" if paused else "Replay playing")
            self.refresh_bindings()
            self._arb.request_flush()

    def action_replay_speed(self, factor: float) -> None:
        replay = self._arb.replay
        if replay is None:
            return
        current = replay.speed if replay.speed is not None else 64.0
        replay.set_speed(min(1024.0, max(1 / 16, current * factor)))
        self._arb.request_flush()

    def action_replay_step(self) -> None:
        if self._arb.replay is not None:
            self._arb.replay.step()
            self._arb.request_flush()

    def action_toggle_record(self) -> None:
        recorder = self._arb.engine.recorder
        if recorder is None:
            return
        if recorder.active:
            path = recorder.stop()
            self.notify(f"Recording saved: {path} ({recorder.events} events)")
        else:
            path = default_session_path(self._arb.clock.now_ns())
            try:
                recorder.start(path)
            except OSError as exc:
                self.notify(f"Cannot record to {path}: {exc.strerror}", severity="error")
                return
            self.notify(f"Recording to {path}")
        self._arb.request_flush()

    def action_confirm(self) -> None:
        self._arb.request_flush()  # show what the key did now, not at the next timed refresh
        spread = self.selected_spread()
        if spread is None or spread.opportunity_id is None:
            self.notify("Nothing to confirm: the selected spread does not pay.", severity="warning")
            return
        engine = self._arb.engine
        quote = engine.quote(spread.opportunity_id)  # what the modal shows is what y sends
        if quote is None:
            self.notify(f"{spread.opportunity_id} no longer pays.", severity="warning")
            return

        def send(quote_id: str) -> ConfirmOutcome:
            try:
                return ConfirmOutcome(engine.confirm(quote_id))
            except ConfirmRefusedError as exc:
                return ConfirmOutcome(None, exc.refusal.code, exc.refusal.detail)

        def cancel(quote_id: str) -> None:
            engine.cancel_quote(quote_id)
            self._arb.bridge.note_local(f"confirm of {quote_id} cancelled: nothing sent")

        def answered(pair_id: str | None) -> None:
            if pair_id is not None:
                self._arb.bridge.note_local(f"{pair_id} sent: {spread.key}")

        self.app.push_screen(
            ConfirmScreen(
                quote,
                engine.instruments,
                send=send,
                requote=lambda old: engine.quote(old.spread.key),
                cancel=cancel,
                now_ns=engine.clock.now_ns,
            ),
            answered,
        )

    def action_simulate(self) -> None:
        self._arb.request_flush()  # show what the key did now, not at the next timed refresh
        spread = self.selected_spread()
        if spread is None:
            return
        result = self._arb.engine.simulate(spread.opportunity_id or spread.key)
        if result is not None:
            self.app.push_screen(SimulationScreen(result, self._arb.engine.instruments))

    def action_abort(self) -> None:
        self._arb.request_flush()  # show what the key did now, not at the next timed refresh
        pid = self.selected_pair()
        if pid is None:
            self.notify("No pair selected: nothing to abort.", severity="warning")
            return
        self.abort_pair(pid)

    def abort_pair(self, pair_id: str) -> None:
        """Abort ``pair_id`` (``x``, or the palette) and say what the abort can really do, decided
        from the pair's view as it was when asked: IOC legs already out cannot be recalled, and a
        pair already final has nothing left to abort."""
        before = self._pair_view(pair_id)
        accepted = self._arb.engine.abort(pair_id)
        notice = describe_abort(pair_id, before if accepted else self._pair_view(pair_id), accepted)
        severity: SeverityLevel = "information" if notice.effective else "warning"
        self._arb.bridge.note_local(notice.text, "" if notice.effective else "warning")
        self.notify(notice.text, severity=severity, timeout=6)
        self._arb.request_flush()

    def _pair_view(self, pair_id: str) -> PairView | None:
        """The pair's published view (the one the pairs pane is drawn from)."""
        pair = self._arb.engine.executor.pairs.get(pair_id)
        return pair.view() if pair is not None else None

    def action_kill(self) -> None:
        self._arb.request_flush()  # show what the key did now, not at the next timed refresh

        def answered(yes: bool | None) -> None:
            if yes:
                self._arb.engine.kill()

        self.app.push_screen(
            AskScreen(
                "Engage the kill switch?",
                "Halts new pairs, cancels every open order arbtui has, and "
                "unwinds what filled. It stays engaged until you resume (R).",
                danger=True,
            ),
            answered,
        )

    def action_resume(self) -> None:
        """``R``: release the kill switch, only once the operator says yes."""
        self._arb.request_flush()  # show what the key did now, not at the next timed refresh
        engine = self._arb.engine
        if not engine.executor.halted:  # (the palette reaches here even when the key is dimmed)
            self.notify("The kill switch is not engaged: nothing to resume.", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes and engine.executor.halted:
                engine.resume()
            elif not yes:
                self._arb.bridge.note_local("resume cancelled: the kill switch stays engaged", "warning")
            self._arb.request_flush()

        self.app.push_screen(
            AskScreen(
                "Release the kill switch?",
                "New pairs can be confirmed again. ARMED stays off until you arm it (A); "
                "pairs already aborted or unwinding are not restarted.",
                danger=True,
            ),
            answered,
        )

    def action_toggle_armed(self) -> None:
        self._arb.request_flush()  # show what the key did now, not at the next timed refresh
        engine = self._arb.engine
        if engine.executor.armed:
            engine.set_armed(False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                try:
                    engine.set_armed(True)
                except ConfirmRefusedError as exc:
                    self.notify(str(exc), severity="error")

        edge = engine.config.execution.armed_min_net_edge_bps
        self.app.push_screen(
            AskScreen(
                "ARM the engine?",
                f"The engine will confirm every opportunity at or above {edge} bp net by "
                "itself, within the risk limits, until you disarm it (A) or kill (K).",
                danger=True,
            ),
            answered,
        )

    def action_toggle_pause(self) -> None:
        self._arb.request_flush()  # show what the key did now, not at the next timed refresh
        engine = self._arb.engine
        engine.set_detection_paused(not engine.detection_paused)
        self._show_detection_paused(engine.detection_paused)

    def _show_detection_paused(self, paused: bool) -> None:
        """Dim the spread figures while detection is paused (``-paused``, styled in app.tcss): they
        are frozen, and must not pass for live ones."""
        try:
            self._one(SpreadsTable).show_paused(paused)
            self.query_one("#spread-detail", Static).set_class(paused, "-paused")
        except NoMatches:  # still composing, or already tearing down
            return

    def action_next_pane(self) -> None:
        self._arb.request_flush()  # show what the key did now, not at the next timed refresh
        self._focus_pane((self._pane + 1) % len(PANES))

    def action_previous_pane(self) -> None:
        self._arb.request_flush()  # show what the key did now, not at the next timed refresh
        self._focus_pane((self._pane - 1) % len(PANES))

    def _focus_pane(self, index: int) -> None:
        self._pane = index
        for i, name in enumerate(PANES):
            self.query_one(f"#{name}").set_class(i == index, "-current")
        # Small terminals show only the current pane: its containers must show too.
        self.query_one("#lower").set_class(PANES[index] != "spreads", "-current")
        self.query_one("#side").set_class(PANES[index] in ("pairs", "analytics"), "-current")
        pane = self.query_one(f"#{PANES[index]}")
        target: Widget = pane
        if isinstance(pane, PairsPane):
            target = pane.live
        target.focus()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-open")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.market_filter = event.value
            self._arb.bridge.spreads_dirty = True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            event.input.remove_class("-open")
            self.query_one(SpreadsTable).focus()

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("-open"):
            box.value = ""
            box.remove_class("-open")
            self.market_filter = ""
            self.query_one(SpreadsTable).focus()

    def action_help(self) -> None:
        from arbtui.ui.screens.help_screen import HelpScreen

        self.app.push_screen(HelpScreen(self.BINDINGS))

    def action_quit_app(self) -> None:
        """``q``: the app's one guarded way out (asks first while pairs are in flight)."""
        self._arb.request_quit()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # The table takes enter for itself (select the row): on the spreads table that means confirm.
        if event.data_table.id == "spreads" and self.check_action("confirm", ()):
            self.action_confirm()

    async def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "spreads":
            self.refresh_bindings_if_changed()
            return
        # Read the cursor's row now rather than the event's: a re-sort may have moved rows since.
        spread = self.selected_spread()
        if spread is not None:
            await self.query_one(BooksPane).select(spread.group)
        self._show_detail()
        self.refresh_bindings_if_changed()

    # --- the flush -----------------------------------------------------------------------------
    async def flush(self, now: int) -> None:
        """Redraw what changed since the last flush (called inside the app's batch_update)."""
        arb = self._arb
        bridge = arb.bridge
        engine = arb.engine
        try:
            table = self._one(SpreadsTable)
            books = self._one(BooksPane)
            pairs = self._one(PairsPane)
            analytics = self._one(AnalyticsPane)
            header = self._one(StatusHeader)
        except NoMatches:  # still composing, or already tearing down
            return
        header.show(engine, now, bridge)
        if arb.replay is not None:
            self._one(ReplayBar).show(arb.replay, now)
        refusals = {}
        for key, spread in bridge.spreads.items():
            if spread.pays and (refusal := engine.would_refuse(spread)) is not None:
                refusals[key] = refusal.code
        table.refresh_spreads(bridge.spreads, now, refusals, self.market_filter)
        bridge.spreads_dirty = False
        selected = table.selected_spread()
        if selected is not None and selected.group != books.group:
            await books.select(selected.group)
        if books.region.area:  # ladders are drawn only when on screen (small terminals show one pane)
            books.redraw(bridge.take_dirty_books())  # hidden, the books stay dirty until they show
        dirty = bridge.take_dirty_pairs()
        if dirty:
            views = [engine.executor.pairs[pid].view() for pid in sorted(dirty) if pid in engine.executor.pairs]
            pairs.update_pairs(views)
        self.refresh_bindings_if_changed()
        analytics.sample(now)
        self._show_detail()
        if bridge.last_notable != self._shown_notable:
            self._shown_notable = bridge.last_notable
            strip = self.query_one("#event-strip", Static)
            strip.update(Text(bridge.last_notable), layout=False)  # one line: no re-layout
            for cls in ("-error", "-warning", "-success"):
                strip.remove_class(cls)
            if bridge.notable_style:
                strip.add_class(f"-{bridge.notable_style}")

    def _show_detail(self) -> None:
        table = self._one(SpreadsTable)
        spread = table.selected_spread()
        if spread is None:
            text = Text("no spread selected", style="dim")
        elif not spread.pays:
            text = Text(
                f"{spread.key}: does not pay after fees and slippage (figures at the touch); s simulates", style="dim"
            )
        elif (code := table.refusals.get(spread.key)) is not None:
            text = Text(f"{spread.opportunity_id} {spread.key}: a confirm would be refused: {code}", style="yellow")
        else:
            text = Text(
                f"{spread.opportunity_id} {spread.key}: pays {spread.expected_pnl:+.2f} "
                f"({spread.net_bps:+} bp net). enter confirms, s simulates",
                style="bold",
            )
        try:
            detail = self.query_one("#spread-detail", Static)
        except NoMatches:  # the screen is being torn down while a timed flush runs
            return
        if getattr(detail, "_last", None) != text.plain:
            detail._last = text.plain  # type: ignore[attr-defined]
            detail.update(text, layout=False)  # one line: no re-layout
