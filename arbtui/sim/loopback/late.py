"""The "late arrival" fault, shared by the loopback venue servers.

A late arrival is an order request whose reply never comes (the client's request times out) and
which the venue has *not* taken yet: every status or lookup endpoint answers exactly what it answers
for an order it never received. After a delay on the server's clock the order arrives after all and
is placed as if it had just been sent: it trades against the book as it is then, rests if it does not
cross (GTC), or is refused by whatever protection the venue applies on arrival (Kraken's ``deadline``).

This is what a queued or delayed request does on a real venue (a request stuck in a load balancer, a
Polymarket taker order held in its matching delay) and what an engine that takes "not found" for
"never arrived" gets wrong: the order executes after the engine has settled the pair as flat.

Each server owns one :class:`LateArrivals` and calls :meth:`LateArrivals.take` on every order request
(after authentication: an unauthenticated request is not an order), then :meth:`LateArrivals.schedule`
with the function that places the order. Tests read :attr:`LateArrivals.records` to wait for the
arrival rather than for a fixed time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from arbtui.domain.clock import NS_PER_S, Clock

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LateArrival:
    """One order request held back by the fault, and what became of it."""

    received_ns: int  # when the request reached the server (its reply is withheld from then on)
    delay_ns: int
    client_order_id: str | None = None  # what the client can look the order up by (Polymarket: the hash)
    arrived_ns: int | None = None  # when the venue took the order (None: still in flight)
    order_id: str | None = None  # the venue's order id, once placed
    refusal: str | None = None  # the venue's refusal on arrival (e.g. Kraken's "EService:Deadline elapsed")

    @property
    def arrived(self) -> bool:
        return self.arrived_ns is not None


# What the placing function returns: (venue order id, refusal text); exactly one is set.
Placement = tuple[str | None, str | None]


class LateArrivals:
    """Armed late-arrival faults of one server and the tasks that place their orders later."""

    def __init__(self, clock: Clock, name: str) -> None:
        self._clock = clock
        self._name = name
        self._armed: list[int] = []  # delay_ns of each armed fault, in order
        self._tasks: set[asyncio.Task[None]] = set()
        self.records: list[LateArrival] = []

    def arm(self, n: int, delay_s: float) -> None:
        """The next ``n`` order requests arrive ``delay_s`` seconds (server clock) late."""
        if delay_s < 0:
            raise ValueError("a late arrival cannot arrive early")
        self._armed.extend([int(delay_s * NS_PER_S)] * n)  # float ok: a delay, not money

    def take(self) -> int | None:
        """The delay of the next armed fault (and disarm it), or None when none is armed."""
        return self._armed.pop(0) if self._armed else None

    @property
    def pending(self) -> int:
        """Requests held back whose order has not arrived yet."""
        return sum(1 for r in self.records if not r.arrived)

    def schedule(self, delay_ns: int, client_order_id: str | None, place: Callable[[], Placement]) -> LateArrival:
        """Place the order with ``place()`` once ``delay_ns`` has passed on the server's clock."""
        record = LateArrival(self._clock.now_ns(), delay_ns, client_order_id)
        self.records.append(record)

        async def arrive() -> None:
            await self._clock.sleep(delay_ns)
            record.order_id, record.refusal = place()
            record.arrived_ns = self._clock.now_ns()
            log.info("%s: late order %s arrived: %s", self._name, client_order_id, record.refusal or record.order_id)

        task = asyncio.get_running_loop().create_task(arrive(), name=f"{self._name}-late-arrival-{len(self.records)}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return record

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: a late arrival failed", self._name, exc_info=task.exception())

    async def close(self) -> None:
        """Cancel the orders still in flight (the server is stopping: they never arrive)."""
        tasks, self._tasks = set(self._tasks), set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
