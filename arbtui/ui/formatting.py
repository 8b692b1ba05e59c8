"""How the console renders numbers: exact decimals shown at a listing's precision."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from arbtui.domain.clock import NS_PER_MS, NS_PER_S


def fixed(value: Decimal, places: int) -> str:
    """``value`` rounded half-even to ``places`` decimals, with thousands separators."""
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    return f"{q:,.{places}f}"


def signed(value: Decimal, places: int) -> str:
    text = fixed(value, places)
    return text if value < 0 else f"+{text}"


def age(ns: int) -> str:
    """A short duration that changes at most every 100 ms: 0.8s, 12s, 4m05s.

    Coarse on purpose: an age that changes on every redraw forces every row to be re-rendered.
    """
    seconds = max(ns, 0) // (NS_PER_S // 10) / 10
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{int(seconds)}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def clock_text(ts_ns: int) -> str:
    """Engine time of day, UTC, to the millisecond (a manual clock starting at 0 shows 00:00:00)."""
    total_ms = ts_ns // NS_PER_MS
    ms = total_ms % 1000
    s = total_ms // 1000
    return f"{(s // 3600) % 24:02d}:{(s // 60) % 60:02d}:{s % 60:02d}.{ms:03d}"
