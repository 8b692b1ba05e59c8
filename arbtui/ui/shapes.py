"""Render a line once per *shape*, then swap its characters in.

Under a busy feed the console redraws the same lines with new digits ten times a second: a size
``3.3173`` becomes ``3.3181``, the layout does not move. Rendering a line through Rich or Textual
(justification, styles, offsets) costs far more than the line is worth, and gives the same
segments for any text of the same shape. So a widget renders the line's *shape* (each printable
character replaced by ``x``, whitespace kept) once, keeps it, and for each new text of that shape
swaps the characters into the kept segments. The widgets that do this check, in ``tests/ui``, that
the result equals a full render.

Only texts whose every character is one cell wide and printable have a shape; others are rendered
in full.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from rich.segment import Segment

SHAPE_CHAR = "x"


# Printable ASCII but the space, to "x": a shape keeps the spaces (justification and stripping
# depend on them) and nothing else.
_TO_SHAPE = str.maketrans({chr(c): SHAPE_CHAR for c in range(0x21, 0x7F)})


def shape_of(text: str) -> str | None:
    """``text`` with every non-space character replaced by ``x``, or None if it has no shape (a
    wide, zero-width or control character, where the segments would depend on the characters)."""
    if not text.isprintable():
        return None
    if text.isascii():
        return text.translate(_TO_SHAPE)
    if cell_len(text) != len(text):
        return None
    return "".join(c if c == " " else SHAPE_CHAR for c in text)


def swap_in(segments: Sequence[Segment], at: int, text: str) -> list[Segment]:
    """``segments`` with the characters at ``at .. at + len(text)`` of their joined text replaced
    by ``text`` (each segment keeps its length, style and control codes)."""
    plain = "".join(segment.text for segment in segments)
    line = plain[:at] + text + plain[at + len(text) :]
    out: list[Segment] = []
    start = 0
    for segment in segments:
        end = start + len(segment.text)
        out.append(Segment(line[start:end], segment.style, segment.control))
        start = end
    return out
