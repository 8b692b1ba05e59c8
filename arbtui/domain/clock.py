"""Injected time.

Nothing on the engine side reads the wall clock directly: it asks a :class:`Clock`. A live run
uses :class:`LiveClock`; tests, snapshots and replays use :class:`ManualClock`, whose time moves
only when told to, so that the same inputs always give the same outputs.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


class Clock(Protocol):
    """A source of time in integer nanoseconds, and a way to wait for it."""

    def now_ns(self) -> int:
        """The current time in nanoseconds since the Unix epoch (or since the start of a test)."""
        ...

    async def sleep(self, duration_ns: int) -> None:
        """Wait until ``now_ns() + duration_ns``; returns at once for a duration <= 0."""
        ...


class LiveClock:
    """Wall-clock time, for live and paper trading."""

    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep(self, duration_ns: int) -> None:
        await asyncio.sleep(max(0, duration_ns) / NS_PER_S)  # float ok: a wait, not money


class ManualClock:
    """A clock that moves only when :meth:`advance` or :meth:`set` is called.

    Sleepers are woken in deadline order, each at its own deadline, so code that sleeps sees the
    same sequence of times it would see live.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._settlers: list[Callable[[], Awaitable[bool]]] = []

    def add_settler(self, settler: Callable[[], Awaitable[bool]]) -> None:
        """Register work outside the event loop (a journal's writer thread) that must finish before
        time moves on; ``settler()`` waits for it and returns whether it had anything to wait for.

        Without this, a task waiting on a thread would resume at whatever simulated time the
        thread happened to finish, and two runs of the same seed could differ.
        """
        self._settlers.append(settler)

    async def _settle(self) -> None:
        while True:
            await _drain()
            busy = False
            for settler in self._settlers:
                busy = await settler() or busy
            if not busy:
                return

    def now_ns(self) -> int:
        return self._now

    async def sleep(self, duration_ns: int) -> None:
        if duration_ns <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self._now + duration_ns, next(self._seq), fut))
        await fut

    def set(self, now_ns: int) -> None:
        """Jump to ``now_ns`` without waking sleepers (for synchronous drivers and snapshots)."""
        if now_ns < self._now:
            raise ValueError("a ManualClock never goes backwards")
        self._now = now_ns

    async def advance(self, duration_ns: int) -> None:
        """Move time forward, waking each sleeper at its own deadline in order.

        After each wake-up the event loop runs until it is idle again, so the woken task's
        follow-up work happens at the right time.
        """
        if duration_ns < 0:
            raise ValueError("a ManualClock never goes backwards")
        target = self._now + duration_ns
        await self._settle()  # tasks created just before this call register their sleeps at the current time
        while self._waiters and self._waiters[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._waiters)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
            await self._settle()
        self._now = target
        await self._settle()

    def next_deadline(self) -> int | None:
        """When the earliest pending sleeper wakes, or None if nobody sleeps."""
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)  # cancelled sleepers
        return self._waiters[0][0] if self._waiters else None

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._waiters if not f.done())


async def _drain(max_rounds: int = 10_000) -> None:
    """Let ready tasks run until the loop has nothing ready (a woken chain of awaits included).

    Reads the event loop's ready queue, a CPython implementation detail, because nothing public
    says "idle"; without it, a fixed number of turns either wastes time or stops a chain midway.
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    for _ in range(max_rounds):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return
