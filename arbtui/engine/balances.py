"""Balance refreshes: the engine's cached free balances, re-read from the venues and never trusted blindly.

The engine keeps each venue's free balances in a cache that sizing and the risk checks read. This
module re-reads them:

- **periodically**, every ``[account] balance_refresh_s`` seconds (0: never on a timer);
- **after each pair** ends (the executor awaits :meth:`BalanceRefresher.refresh` for every venue the
  pair traded on, while the pair still holds its reservation);
- **after a refusal for funds**: a leg a venue rejected for insufficient funds, or a ``BALANCE`` risk
  refusal (:meth:`BalanceRefresher.request`, at most one per venue every :data:`REFUSAL_GAP_NS`).

A refresh of one venue never overlaps another of the same venue: a second caller joins the refresh
already running. Each attempt is bounded by ``balance_timeout_ms`` of engine-clock time; a failed
attempt is retried ``balance_retries`` times in all, waiting ``balance_backoff_ms`` and doubling (at
most :data:`MAX_BACKOFF_NS`). A refresh **never raises** into its caller (only cancellation passes):
the first failed attempt marks the venue's balances *stale* (since its last good refresh), and the
risk checks refuse new pairs on a stale venue (``BALANCE_STALE``) until a refresh succeeds. Every
attempt, good or failed, is a :class:`~arbtui.domain.events.BalancesRefreshed` event.

Real venues' ``balances()`` calls go through their own rate limiters (``arbtui.venues.ratelimit``);
the period keeps the periodic refreshes a small share of any venue's budget (one call per venue
every 30 s by default; Polymarket's reads one request per listing plus one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from arbtui.config import AccountConfig
from arbtui.domain.clock import NS_PER_MS, NS_PER_S, Clock
from arbtui.domain.events import BalancesRefreshed, Event
from arbtui.venues.base import Venue

log = logging.getLogger(__name__)

MAX_BACKOFF_NS = 30 * NS_PER_S
REFUSAL_GAP_NS = 2 * NS_PER_S  # a refusal for funds triggers at most one refresh per venue this often

# How venues word a refusal for funds (OrderReport.reason of a REJECTED order): the simulated venue
# and the paper trader say "insufficient funds: ..."; Kraken "EOrder:Insufficient funds" (its error
# list, docs.kraken.com REST errors); Coinbase "INSUFFICIENT_FUND" / "Insufficient balance in source
# account" (Advanced Trade create-order failure reasons); Polymarket "not enough balance / allowance"
# (the CLOB's order error, docs.polymarket.com).
FUNDS_REFUSAL_MARKERS = ("insufficient", "not enough balance")

Observer = Callable[[str, Mapping[str, Decimal], int, int], Awaitable[None]]


def is_funds_refusal(reason: str | None) -> bool:
    """Whether a venue's rejection reason says the account lacked the funds."""
    text = (reason or "").lower()
    return any(marker in text for marker in FUNDS_REFUSAL_MARKERS)


class BalanceRefresher:
    """Owns the cache of free balances per venue and keeps it fresh (see the module docstring).

    ``balances`` is the cache itself (venue -> asset -> free amount), read by the engine's
    ``free_balance``. ``observe(venue, balances, started_ns, now_ns)`` is awaited after each good
    refresh (position reconciliation); it must not raise, and is logged if it does.
    """

    def __init__(
        self,
        config: AccountConfig,
        clock: Clock,
        venues: Mapping[str, Venue],
        emit: Callable[[Event], None],
        observe: Observer | None = None,
    ) -> None:
        self._cfg = config
        self._clock = clock
        self._venues = venues
        self._emit = emit
        self._observe = observe
        self.balances: dict[str, dict[str, Decimal]] = {v: {} for v in venues}
        self.last_good_ns: dict[str, int] = {}
        self._stale_since: dict[str, int] = {}
        self._running: dict[str, asyncio.Task[bool]] = {}
        self._requested_ns: dict[str, int] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.attempts = 0  # balances() calls made (for tests and the analytics pane)
        self.failures = 0

    # --- queries -------------------------------------------------------------------------------
    def stale_venues(self) -> frozenset[str]:
        """Venues whose balances could not be refreshed since their last good refresh."""
        return frozenset(self._stale_since)

    def stale_since(self, venue: str) -> int | None:
        return self._stale_since.get(venue)

    # --- commands ------------------------------------------------------------------------------
    async def refresh(self, venue: str, *, attempts: int | None = None) -> bool:
        """Re-read ``venue``'s balances, retrying; True if they are fresh now. Never raises (a
        cancelled caller stops waiting; the refresh it joined goes on for the others).

        ``attempts`` overrides ``balance_retries`` (the engine's start makes one: a venue that cannot
        answer then starts stale, and the periodic refresh tries again)."""
        if venue not in self._venues:
            return False
        task = self._running.get(venue)
        if task is None or task.done():
            tries = attempts if attempts is not None else self._cfg.balance_retries
            task = asyncio.get_running_loop().create_task(self._refresh(venue, tries), name=f"balances-{venue}")
            task.add_done_callback(self._refresh_done)
            self._running[venue] = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in here (a listener raising, say) must not reach a pair either
            log.exception("%s: balance refresh failed", venue)
            return False

    def request(self, venue: str) -> None:
        """A refusal for funds on ``venue``: refresh soon, in the background (at most once per
        :data:`REFUSAL_GAP_NS`, and not while a refresh of it is running)."""
        if venue not in self._venues:
            return
        running = self._running.get(venue)
        if running is not None and not running.done():
            return
        now = self._clock.now_ns()
        last = self._requested_ns.get(venue)
        if last is not None and now - last < REFUSAL_GAP_NS:
            return
        self._requested_ns[venue] = now
        self._spawn(self.refresh(venue), f"balances-after-refusal-{venue}")

    async def run_periodic(self) -> None:
        """The periodic refresh (an engine driver): every venue, every ``balance_refresh_s``."""
        period = self._cfg.balance_refresh_s * NS_PER_S
        if period <= 0:
            return
        while True:
            await self._clock.sleep(period)
            await asyncio.gather(*(self.refresh(v) for v in self._venues))

    async def close(self) -> None:
        """Stop every refresh still running (the engine is stopping)."""
        tasks = [*self._running.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()

    # --- internals -----------------------------------------------------------------------------
    async def _refresh(self, venue: str, attempts: int) -> bool:
        started = self._clock.now_ns()
        delay = self._cfg.balance_backoff_ms * NS_PER_MS
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await self._clock.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_NS)
            self.attempts += 1
            try:
                got = await self._read(venue)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever a venue raises, the caller (a pair ending) must not see it
                self.failures += 1
                now = self._clock.now_ns()
                since = self._stale_since.setdefault(venue, self.last_good_ns.get(venue, now))
                what = "retrying" if attempt < attempts else "balances left stale"
                detail = f"attempt {attempt}/{attempts} failed ({what}): {exc}"
                log.warning("%s: balance refresh %s", venue, detail)
                self._emit(BalancesRefreshed(now, venue, False, since, detail))
                continue
            now = self._clock.now_ns()
            self.balances[venue] = got
            self.last_good_ns[venue] = now
            was_stale = self._stale_since.pop(venue, None)
            detail = "" if was_stale is None else f"fresh again after attempt {attempt}"
            self._emit(BalancesRefreshed(now, venue, True, None, detail))
            if self._observe is not None:
                try:
                    await self._observe(venue, got, started, now)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: reconciling positions after a balance refresh failed", venue)
            return True
        return False

    async def _read(self, venue: str) -> dict[str, Decimal]:
        """One ``balances()`` call, bounded by ``balance_timeout_ms`` of engine-clock time."""
        timeout_ns = self._cfg.balance_timeout_ms * NS_PER_MS
        work = asyncio.ensure_future(self._venues[venue].balances())
        timer = asyncio.ensure_future(self._clock.sleep(timeout_ns))
        try:
            waiting: set[asyncio.Future[Any]] = {work, timer}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            timer.cancel()
            raise
        timer.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise TimeoutError(f"no answer within {self._cfg.balance_timeout_ms} ms")
        result = dict(work.result())
        for asset, amount in result.items():
            if not isinstance(amount, Decimal) or not amount.is_finite():
                raise ValueError(f"unreadable balance for {asset}: {amount!r}")
        return result

    def _refresh_done(self, task: asyncio.Task[bool]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # _refresh catches everything a venue raises: this is a bug, say so
            log.error("balance refresh task %s failed", task.get_name(), exc_info=exc)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run(), name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("balance task %s failed", task.get_name(), exc_info=task.exception())
