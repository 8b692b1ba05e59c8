"""Nearest-rank percentiles: every figure reported is a sample that was measured (no interpolation).
One implementation for the engine's analytics and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparisonT


def percentile(samples: Iterable[SupportsRichComparisonT], q: float) -> SupportsRichComparisonT | None:
    """The nearest-rank ``q``-th percentile (``q`` in 0..100) of ``samples``; None when there are none."""
    ordered = sorted(samples)
    if not ordered:
        return None
    n = len(ordered)
    rank = max(1, -int(-q * n // 100))  # ceil(q/100 * n), at least 1
    return ordered[min(rank, n) - 1]
