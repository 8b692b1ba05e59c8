"""Execution analytics: latency, skew, slippage and capture, from what the executor observed.

All times are engine-clock nanoseconds. Percentiles use the nearest-rank method on the samples
kept (a sliding window of the most recent ``window`` samples per series).
"""

from __future__ import annotations

from collections import Counter, deque
from decimal import Decimal

from arbtui.domain.clock import NS_PER_MS
from arbtui.domain.stats import percentile


class LatencySeries:
    def __init__(self, window: int = 1000) -> None:
        self.samples: deque[int] = deque(maxlen=window)

    def add(self, value_ns: int) -> None:
        self.samples.append(value_ns)

    def p(self, q: int) -> int | None:
        return percentile(list(self.samples), q)

    def summary_ms(self) -> dict[str, float | int | None]:
        p50, p99 = self.p(50), self.p(99)
        return {
            "n": len(self.samples),
            "p50_ms": None if p50 is None else round(p50 / NS_PER_MS, 3),  # float ok: a report figure
            "p99_ms": None if p99 is None else round(p99 / NS_PER_MS, 3),  # float ok: a report figure
        }


class ExecutionAnalytics:
    def __init__(self) -> None:
        self.confirm_to_sent = LatencySeries()
        self.send_skew = LatencySeries()
        self.ack_skew = LatencySeries()
        self.ack_latency: dict[str, LatencySeries] = {}
        self.slippage_bps: list[Decimal] = []  # per filled entry leg; positive = worse than expected
        self.opportunities_detected = 0
        self.pairs_confirmed = 0
        self.pairs_completed = 0
        self.captured: set[str] = set()  # opportunity ids with at least one completed pair
        self.refusals: Counter[str] = Counter()
        self.expected_pnl = Decimal(0)  # of completed pairs
        self.realized_pnl = Decimal(0)  # of every pair that ended with a known PnL

    def ack(self, venue: str, latency_ns: int) -> None:
        self.ack_latency.setdefault(venue, LatencySeries()).add(latency_ns)

    @property
    def capture_rate(self) -> Decimal:
        """Share of detected opportunities that ended with at least one completed pair."""
        if not self.opportunities_detected:
            return Decimal(0)
        return (Decimal(len(self.captured)) / Decimal(self.opportunities_detected)).quantize(Decimal("0.0001"))
