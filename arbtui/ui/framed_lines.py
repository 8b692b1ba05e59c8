"""A widget line cache that draws a bordered widget's content lines without Textual's full
per-line styling pass when nothing but the border surrounds them (see :class:`FramedLines`)."""

from __future__ import annotations

from collections.abc import Callable

from rich.segment import Segment
from rich.style import Style
from rich.terminal_theme import TerminalTheme
from textual._styles_cache import StylesCache
from textual.color import Color
from textual.content import Content
from textual.css.styles import StylesBase
from textual.geometry import Size, Spacing
from textual.strip import Strip
from textual.style import Style as TextualStyle


class FramedLines(StylesCache):
    """Textual's per-widget line cache, with a short cut for content lines.

    Textual draws every content line of a widget by working out its border, padding, outline,
    hatch, tint and opacity again. For a widget with a one-cell border all round and nothing else
    (no padding, outline, hatch, tint, text opacity or opacity: a stale ladder, at 70% opacity, is
    drawn in full), a content line is its own line between the two border cells. So the first
    content line of a given look is drawn in full and its border cells kept, and the next ones are
    those two cells around the new content: the segments Textual draws (checked on that first line,
    and against full renders in ``tests/ui``). Under a busy feed every line of both ladders and of
    the spreads table changes on every refresh; this more than halves what each one costs.
    """

    def __init__(self) -> None:
        super().__init__()
        # look -> (left border cell, right border cell, inner style), or None: draw in full
        self._frames: dict[tuple[object, ...], tuple[Segment, Segment, Style] | None] = {}

    def forget_frames(self) -> None:
        self._frames.clear()

    def render_line(
        self,
        styles: StylesBase,
        y: int,
        size: Size,
        content_size: Size,
        padding: Spacing,
        base_background: Color,
        background: Color,
        render_content_line: Callable[[int], Strip],
        border_title: tuple[Content, Color, Color, TextualStyle] | None,
        border_subtitle: tuple[Content, Color, Color, TextualStyle] | None,
        opacity: float,
        ansi_theme: TerminalTheme,
        native_ansi: bool,
    ) -> Strip:
        args = (
            styles, y, size, content_size, padding, base_background, background, render_content_line,
            border_title, border_subtitle, opacity, ansi_theme, native_ansi,
        )  # fmt: skip
        width, height = size
        if not 0 < y < height - 1 or y > content_size.height:  # border rows, or below the content
            return super().render_line(*args)
        # Everything the border cells depend on (a style change also forgets the frames).
        look = (
            size, content_size, padding, base_background, background, opacity, native_ansi, id(ansi_theme),
            styles.border,
        )  # fmt: skip
        if look not in self._frames:
            if len(self._frames) >= 16:  # a handful of looks: sizes, themes, borders
                self._frames.clear()
            strip = super().render_line(*args)
            self._frames[look] = self._frame_of(strip, *args)
            return strip
        frame = self._frames[look]
        if frame is None:
            return super().render_line(*args)
        left, right, inner = frame
        line = render_content_line(y - 1).adjust_cell_length(content_size.width, inner)
        return Strip([left, *line, right], width)

    def _frame_of(
        self,
        strip: Strip,
        styles: StylesBase,
        y: int,
        size: Size,
        content_size: Size,
        padding: Spacing,
        base_background: Color,
        background: Color,
        render_content_line: Callable[[int], Strip],
        border_title: object,
        border_subtitle: object,
        opacity: float,
        *_: object,
    ) -> tuple[Segment, Segment, Style] | None:
        """The border cells of a content line drawn in full, if nothing but them surrounds it."""
        simple = (
            opacity == 1.0
            and styles.gutter == Spacing(1, 1, 1, 1)
            and padding == Spacing(0, 0, 0, 0)
            and not any(edge for edge, _ in styles.outline)
            and styles.tint.a == 0
            and styles.text_opacity == 1.0
            and not (styles.has_rule("hatch") and styles.hatch != "none")
            and content_size.width == size.width - 2
        )
        segments = list(strip)
        if not simple or len(segments) < 2:
            return None
        inner = self.get_inner_outer(base_background, background)[0].rich_style
        left, right = segments[0], segments[-1]
        line = render_content_line(y - 1).adjust_cell_length(content_size.width, inner)
        if segments != [left, *line, right]:
            return None  # not what the short cut would draw: always draw this look in full
        return left, right, inner
