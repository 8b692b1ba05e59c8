"""The console's cheap rendering paths draw exactly what Textual and the DataTable draw.

The spreads table, the ladders and the header render a line once per *shape* and swap the
characters in (``arbtui.ui.shapes``); the ladders repaint only the lines that changed. Each test
compares, segment for segment (text, style, offsets), with the rendering the widget used to get
from Textual, on the demo's real state and on random contents.
"""

from __future__ import annotations

import random
from decimal import Decimal

from rich.segment import Segment
from rich.text import Text
from textual.coordinate import Coordinate
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widget import Widget
from textual.widgets import DataTable

from arbtui.engine.engine import BookLadder
from arbtui.ui.formatting import fixed
from arbtui.ui.shapes import shape_of, swap_in
from arbtui.ui.widgets.book_ladder import BookLadderView
from arbtui.ui.widgets.books_pane import BooksPane
from arbtui.ui.widgets.spreads_table import COLUMNS, Cell, SpreadsTable
from arbtui.ui.widgets.status_header import StatusHeader
from tests.harness import make_app, warm_up


def test_shape_keeps_spaces_and_length() -> None:
    assert shape_of("coinbase @ 3,400.58") == "xxxxxxxx x xxxxxxxx"
    assert shape_of("  +1.5") == "  xxxx"
    assert shape_of("⊘ ETH-USD") == "x xxxxxxx"  # one cell wide: it has a shape
    assert shape_of("") == ""
    assert shape_of("中") is None  # two cells wide
    assert shape_of("a\tb") is None  # not printable
    assert shape_of("a\u200bb") is None  # zero width


def test_swap_in_keeps_segment_lengths_and_styles() -> None:
    shape = [Segment(" xx", "bold"), Segment("xxx", None), Segment("x  ", "dim")]
    out = swap_in(shape, 1, "12.45")
    assert out == [Segment(" 12", "bold"), Segment(".45", None), Segment("x  ", "dim")]
    assert swap_in(shape, 0, "") == shape


def _random_cell(rng: random.Random, width: int) -> Cell:
    alphabet = "0123456789.,+-@ abcxyz⊘"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, width + 3)))
    if rng.random() < 0.6:
        text = text.strip()
    style = rng.choice(["", "dim", "bold", "bold green", "yellow"])
    return Cell(text, style, Decimal(rng.randint(-5, 5)), rng.choice(["left", "right"]))


async def _check_table(size: tuple[int, int]) -> None:
    app, clock = make_app()
    async with app.run_test(size=size) as pilot:
        await warm_up(app, clock, 16)
        await pilot.pause()
        table = app.main_screen.query_one(SpreadsTable)
        rng = random.Random(7)
        for trial in range(40):
            if trial:  # new contents: digits as under a busy feed, then anything at all
                for row in table.ordered_rows:
                    for key, _, width in COLUMNS:
                        if rng.random() < 0.6:
                            digits = Cell(str(rng.randint(0, 10 ** rng.randint(1, 6))), "bold", Decimal(0))
                            table._data[row.key][key] = _random_cell(rng, width) if trial > 20 else digits
                table._update_count += 1
            table.cursor_coordinate = Coordinate(rng.randrange(table.row_count), 0)
            table._pseudo_class_state = table.get_pseudo_class_state()
            base = table.rich_style
            width = table.size.width
            for y in range(table.row_count + 1):
                table._update_count += 1  # neither rendering may answer from the DataTable's caches
                ours = table._render_line(y, 0, width, base)
                table._update_count += 1
                theirs = DataTable._render_line(table, y, 0, width, base)
                assert list(ours) == list(theirs), (size, trial, y)
            for row_index in range(-1, table.row_count):
                for column_index, column in enumerate(table.ordered_columns):
                    for cursor in (False, True):
                        args = (row_index, column_index, base, column.get_render_width(table), cursor, False)
                        table._update_count += 1
                        ours_cell = table._render_cell(*args)
                        table._update_count += 1
                        assert ours_cell == DataTable._render_cell(table, *args)
        await app.engine.stop("test over")


async def test_spreads_table_draws_what_the_datatable_draws() -> None:
    await _check_table((160, 48))


async def test_spreads_table_draws_what_the_datatable_draws_when_cropped() -> None:
    await _check_table((80, 24))  # the table is narrower than its columns: cells are cut


def _whole_ladder(view: BookLadderView) -> list[Strip]:
    """The ladder as Textual draws it from one Text (how the widget used to render)."""
    width, height = view.size
    visual = visualize(view, view.content_text(), markup=False)
    strips = Visual.to_strips(view, visual, width, height, view.visual_style)
    blank = Strip.blank(width, view.visual_style.rich_style)
    return list(strips) + [blank] * (height - len(strips))


async def test_ladders_draw_line_by_line_what_one_text_draws() -> None:
    for size in ((160, 48), (120, 40), (112, 40)):  # the last one is narrow: no cumulative column
        app, clock = make_app()
        async with app.run_test(size=size) as pilot:
            await warm_up(app, clock, 16)
            await pilot.pause()
            rng = random.Random(11)
            for view in app.main_screen.query(BookLadderView):
                real = view._shown[0] if view._shown else None
                assert real is not None
                for _ in range(60):
                    bids, asks = real.bids[: rng.choice([0, 1, 3, 10])], real.asks[: rng.choice([0, 2, 10])]
                    ladder = BookLadder(
                        real.venue, real.market, bids, asks, real.last_update_ns, rng.random() < 0.3, False
                    )
                    best_bid = bids[0][0] if bids and rng.random() < 0.7 else None
                    best_ask = asks[0][0] if asks and rng.random() < 0.7 else None
                    view.show(ladder if rng.random() > 0.05 else None, best_bid, best_ask)
                    ours = [view.render_line(y) for y in range(view.size.height)]
                    assert [list(s) for s in ours] == [list(s) for s in _whole_ladder(view)], size
            await app.engine.stop("test over")


async def test_ladder_shows_the_book_and_repaints_only_changed_lines() -> None:
    app, clock = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await warm_up(app, clock, 16)
        await pilot.pause()
        view = app.main_screen.query(BookLadderView).first()
        ladder = view._shown[0] if view._shown else None
        assert ladder is not None and len(ladder.bids) >= 10 and len(ladder.asks) >= 10
        pp, qp = view.listing.price_precision, min(view.listing.qty_precision, 4)
        lines = view.content_text().plain.split("\n")
        assert lines[0].split() == ["Price", "Size", "Cum."]
        assert lines[1].split()[0] == fixed(ladder.asks[9][0], pp)  # the 10th ask on top
        best_ask = [fixed(ladder.asks[0][0], pp), fixed(ladder.asks[0][1], qp), fixed(ladder.asks[0][1], qp)]
        assert lines[10].split() == best_ask  # the best ask just above the spread line
        assert lines[11].split() == ["spread", fixed(ladder.asks[0][0] - ladder.bids[0][0], pp)]
        cum = sum((q for _, q in ladder.bids), Decimal(0))
        assert lines[21].split() == [fixed(ladder.bids[9][0], pp), fixed(ladder.bids[9][1], qp), fixed(cum, qp)]
        for y in range(view.size.height):
            view.render_line(y)
        before = view.lines_repainted
        # The last bid level's size changes: its line (size and cumulative size) and nothing else.
        last_price, last_qty = ladder.bids[9]
        bids = (*ladder.bids[:9], (last_price, last_qty + Decimal("0.5")))
        changed = BookLadder(ladder.venue, ladder.market, bids, ladder.asks, ladder.last_update_ns, False, False)
        view.show(changed, *view._shown[1:])
        for y in range(view.size.height):
            view.render_line(y)
        assert view.lines_repainted - before == 1
        await app.engine.stop("test over")


async def test_header_draws_what_textual_draws() -> None:
    app, clock = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        header = app.main_screen.query_one(StatusHeader)
        for step in range(30):
            await warm_up(app, clock, 0.137)
            if step == 10:
                await pilot.press("p")
                await app.flush()
            ours = header.render_line(0)
            header._dirty_regions.add(header.size.region)  # make Textual render the Text itself
            assert list(ours) == list(Widget.render_line(header, 0))
        assert "PAUSED" in header.render().plain
        await app.engine.stop("test over")


async def test_header_wider_than_the_terminal_is_drawn_by_textual() -> None:
    app, clock = make_app()
    async with app.run_test(size=(60, 20)):
        await warm_up(app, clock, 1)
        header = app.main_screen.query_one(StatusHeader)
        text = header.render()
        assert isinstance(text, Text) and text.cell_len > header.size.width
        header._dirty_regions.add(header.size.region)
        assert list(header.render_line(0)) == list(Widget.render_line(header, 0))
        await app.engine.stop("test over")


async def test_hidden_ladders_are_drawn_when_they_show() -> None:
    app, clock = make_app()
    async with app.run_test(size=(80, 24)) as pilot:  # one pane at a time: the books are hidden
        await warm_up(app, clock, 3)
        await pilot.pause()
        ladders = list(app.main_screen.query(BookLadderView))
        drawn = [view._shown for view in ladders]  # drawn once, when the spread was selected
        await warm_up(app, clock, 3)  # the books move
        assert [view._shown for view in ladders] == drawn  # not redrawn while hidden
        assert app.bridge.dirty_books  # the books stay dirty meanwhile
        await pilot.press("tab")  # the books pane shows
        await pilot.pause()
        await app.flush()
        for view in ladders:
            expected = app.engine.ladder(view.listing.venue, view.listing.market, view.depth)
            assert view._shown is not None and view._shown[0] == expected
        await app.engine.stop("test over")


async def test_framed_lines_draw_what_textual_draws() -> None:
    from textual._styles_cache import StylesCache
    from textual.geometry import Region

    app, clock = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await warm_up(app, clock, 16)
        await pilot.pause()
        for state in ("live", "stale", "crossed", "live again", "moved"):
            if state == "moved":
                await warm_up(app, clock, 2)
            for view in app.main_screen.query(BookLadderView):
                view.set_class(state == "stale", "-stale")
                view.set_class(state == "crossed", "-crossed")
            await pilot.pause()
            for view in app.main_screen.query(BookLadderView):
                for _ in range(2):  # the first pass keeps a frame, the second uses it
                    view._styles_cache.clear()
                    region = Region(0, 0, *view.outer_size)
                    ours = view._styles_cache.render_widget(view, region)
                    theirs = StylesCache().render_widget(view, region)
                    assert [list(s) for s in ours] == [list(s) for s in theirs], state
                frames = list(view._styles_cache._frames.values())
                # The short cut is taken (a frame is kept), except while stale (70% opacity).
                assert (frames[-1] is None) == (state == "stale"), state
        table = app.main_screen.query_one(SpreadsTable)
        for focused in (True, False, True):  # the border changes colour with the focus
            if focused:
                table.focus()
            else:
                app.main_screen.query_one(BooksPane).focus()
            await pilot.pause()
            for _ in range(2):
                table._styles_cache.clear()
                table._update_count += 1
                region = Region(0, 0, *table.outer_size)
                ours = table._styles_cache.render_widget(table, region)
                table._update_count += 1
                theirs = StylesCache().render_widget(table, region)
                assert [list(s) for s in ours] == [list(s) for s in theirs], focused
            assert list(table._styles_cache._frames.values())[-1] is not None
        await app.engine.stop("test over")


def test_a_changed_ladder_line_marks_only_its_changed_cells() -> None:
    from textual.geometry import Region

    from arbtui.ui.widgets.book_ladder import _changed

    was = (("  65,193.8", "green"), ("    0.0400", ""), ("    1.2345", "dim"))
    size_moved = (("  65,193.8", "green"), ("    0.0500", ""), ("    1.2445", "dim"))
    assert _changed(3, size_moved, was, 30) == Region(10, 3, 20, 1)
    assert _changed(3, (("  65,193.8", "bold black on green"), *was[1:]), was, 30) == Region(0, 3, 10, 1)
    assert _changed(3, (was[0], ("   10.0400", ""), was[2]), was, 30) == Region(10, 3, 10, 1)
    assert _changed(3, was[:2], was, 30) == Region(0, 3, 30, 1)  # a chunk fewer: the whole line
    assert _changed(3, (("65,193.8", "green"), *was[1:]), was, 30) == Region(0, 3, 30, 1)  # moved
