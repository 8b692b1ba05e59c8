"""Per-venue circuit breakers.

A venue's breaker trips after ``consecutive`` failed orders in a row, or when at least
``min_samples`` orders in the last ``window`` include a ``failure_rate`` share of failures. A
failure is a rejection, a timeout or a transport error (a leg whose outcome was UNKNOWN counts,
even if a status query later finds it filled: the venue did not answer). A tripped venue takes no
new pairs until the operator resets it; unwinds on it are still allowed, since they reduce risk.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal


class CircuitBreaker:
    def __init__(self, venue: str, consecutive: int, window_ns: int, failure_rate: Decimal, min_samples: int) -> None:
        self.venue = venue
        self._consecutive_limit = consecutive
        self._window_ns = window_ns
        self._rate = failure_rate
        self._min_samples = min_samples
        self._outcomes: deque[tuple[int, bool]] = deque()  # (ts_ns, failed)
        self.consecutive_failures = 0
        self.tripped = False
        self.reason = ""
        self.trips = 0

    def record(self, now_ns: int, failed: bool) -> bool:
        """Record an order's outcome; returns True if this trips the breaker."""
        self._outcomes.append((now_ns, failed))
        while self._outcomes and self._outcomes[0][0] < now_ns - self._window_ns:
            self._outcomes.popleft()
        self.consecutive_failures = self.consecutive_failures + 1 if failed else 0
        if self.tripped:
            return False
        if self.consecutive_failures >= self._consecutive_limit:
            return self._trip(f"{self.consecutive_failures} consecutive failures")
        n = len(self._outcomes)
        failures = sum(1 for _, f in self._outcomes if f)
        if n >= self._min_samples and Decimal(failures) / Decimal(n) >= self._rate:
            return self._trip(f"{failures} of the last {n} orders failed")
        return False

    def _trip(self, reason: str) -> bool:
        self.tripped = True
        self.reason = reason
        self.trips += 1
        return True

    def reset(self) -> None:
        self.tripped = False
        self.reason = ""
        self.consecutive_failures = 0
        self._outcomes.clear()

    @property
    def window_failure_rate(self) -> Decimal:
        if not self._outcomes:
            return Decimal(0)
        return Decimal(sum(1 for _, f in self._outcomes if f)) / Decimal(len(self._outcomes))
