"""Recent mid-price volatility, for the dynamic part of the detector's slippage buffer.

An exponentially weighted estimate of the variance rate of mid-price returns (per second), with a
configured half-life. The buffer is the standard deviation of the mid over the expected execution
latency: how far the price may move between seeing a spread and both legs reaching the venues.

This is a statistical estimate, computed in floats; it reaches money only as a Decimal number of
basis points rounded to 0.01 bp (:meth:`VolatilityEstimator.move_bps`).
"""

from __future__ import annotations

import math
from decimal import Decimal

from arbtui.domain.clock import NS_PER_S


class VolatilityEstimator:
    __slots__ = ("_halflife_s", "_variance_rate", "_last_mid", "_last_ns", "samples", "_move_key", "_move")

    def __init__(self, halflife_s: float) -> None:
        self._halflife_s = halflife_s
        self._variance_rate = 0.0  # float ok: squared returns per second
        self._last_mid: float | None = None
        self._last_ns = 0
        self.samples = 0
        self._move_key: tuple[float, int] | None = None  # float ok: the estimate (and horizon) of the cached move
        self._move = Decimal(0)

    def update(self, mid: Decimal, now_ns: int) -> None:
        m = float(mid)  # float ok: statistics on prices, not money
        last = self._last_mid
        if last is not None and now_ns > self._last_ns and m != last:
            dt = (now_ns - self._last_ns) / NS_PER_S
            r = (m - last) / last
            # Weight the new observation by the time it covers, so fast and slow feeds agree.
            w = 1.0 - 0.5 ** (dt / self._halflife_s)
            self._variance_rate += w * (r * r / dt - self._variance_rate)
            self.samples += 1
        if last is None or m != last:
            self._last_mid = m
            self._last_ns = now_ns

    def move_bps(self, horizon_ns: int) -> Decimal:
        """One standard deviation of the mid's move over ``horizon_ns``, in bps (0.01 bp steps).

        The detector asks for it on every evaluation; it only changes when a new mid moves the estimate,
        so the last answer is kept (the same Decimal object, for the same estimate and horizon)."""
        key = (self._variance_rate, horizon_ns)
        if key == self._move_key:
            return self._move
        sigma = math.sqrt(self._variance_rate * horizon_ns / NS_PER_S)
        self._move = Decimal(round(sigma * 1_000_000)) / 100
        self._move_key = key
        return self._move
