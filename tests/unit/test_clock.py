"""ManualClock: time moves only when told to, and sleepers wake in order at their own deadlines."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from arbtui.domain.clock import ManualClock


async def test_sleepers_wake_in_deadline_order_each_at_its_own_deadline() -> None:
    clock = ManualClock(start_ns=1_000)
    woke: list[tuple[str, int]] = []

    async def sleeper(name: str, duration: int) -> None:
        await clock.sleep(duration)
        woke.append((name, clock.now_ns()))

    # Started out of order on purpose: the order of waking must follow the deadlines.
    tasks = [asyncio.create_task(sleeper(n, d)) for n, d in (("c", 300), ("a", 100), ("b", 200), ("d", 900))]
    await asyncio.sleep(0)  # let every sleeper register
    assert clock.pending_sleepers == 4
    await clock.advance(500)
    assert woke == [("a", 1_100), ("b", 1_200), ("c", 1_300)]
    assert clock.now_ns() == 1_500
    assert clock.pending_sleepers == 1
    await clock.advance(400)
    assert woke[-1] == ("d", 1_900)
    await asyncio.gather(*tasks)


async def test_equal_deadlines_wake_in_the_order_they_slept() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str) -> None:
        await clock.sleep(50)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n)) for n in "xyz"]
    await asyncio.sleep(0)
    await clock.advance(50)
    assert woke == ["x", "y", "z"]
    await asyncio.gather(*tasks)


async def test_a_periodic_sleeper_sees_every_tick_inside_one_advance() -> None:
    clock = ManualClock()
    seen: list[int] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(10)
            seen.append(clock.now_ns())

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await clock.advance(35)
    assert seen == [10, 20, 30]
    assert clock.now_ns() == 35
    await clock.advance(5)
    assert seen == [10, 20, 30, 40]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_work_after_a_wake_up_runs_before_advance_returns() -> None:
    """A woken task's follow-up (here: a second, zero-length sleep and a write) happens at its deadline."""
    clock = ManualClock()
    log: list[tuple[str, int]] = []

    async def chain() -> None:
        await clock.sleep(100)
        log.append(("woke", clock.now_ns()))
        await clock.sleep(0)
        log.append(("after", clock.now_ns()))
        await clock.sleep(100)
        log.append(("second", clock.now_ns()))

    task = asyncio.create_task(chain())
    await asyncio.sleep(0)
    await clock.advance(250)
    assert log == [("woke", 100), ("after", 100), ("second", 200)]
    await task


async def test_a_cancelled_sleeper_is_not_pending_and_does_not_block_others() -> None:
    clock = ManualClock()
    cancelled = asyncio.create_task(clock.sleep(10))
    woke: list[int] = []

    async def sleeper() -> None:
        await clock.sleep(20)
        woke.append(clock.now_ns())

    other = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    assert clock.pending_sleepers == 1
    await clock.advance(30)
    assert woke == [20]
    await other


async def test_advance_with_no_sleepers_just_moves_time() -> None:
    clock = ManualClock(start_ns=7)
    assert clock.pending_sleepers == 0
    await clock.advance(0)
    assert clock.now_ns() == 7
    await clock.advance(1_000_000_000)
    assert clock.now_ns() == 1_000_000_007


async def test_non_positive_sleep_returns_at_once_without_moving_time() -> None:
    clock = ManualClock(start_ns=5)
    await asyncio.wait_for(clock.sleep(0), timeout=1)
    await asyncio.wait_for(clock.sleep(-10), timeout=1)
    assert clock.now_ns() == 5
    assert clock.pending_sleepers == 0


def test_set_jumps_forward_and_refuses_to_go_backwards() -> None:
    clock = ManualClock(start_ns=100)
    clock.set(100)  # standing still is allowed
    clock.set(250)
    assert clock.now_ns() == 250
    with pytest.raises(ValueError):
        clock.set(249)
    assert clock.now_ns() == 250


async def test_set_does_not_wake_sleepers_until_the_next_advance() -> None:
    clock = ManualClock()
    woke: list[int] = []

    async def sleeper() -> None:
        await clock.sleep(100)
        woke.append(clock.now_ns())

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    clock.set(500)
    await asyncio.sleep(0)
    assert woke == []
    await clock.advance(0)
    # The deadline (100) has passed; the sleeper wakes now and time never runs backwards to it.
    assert woke == [500]
    await task


async def test_advance_never_moves_time_backwards() -> None:
    """The class promises "a ManualClock never goes backwards" (set() enforces it); so must advance()."""
    clock = ManualClock(start_ns=100)
    with contextlib.suppress(ValueError):  # refusing is fine; moving time backwards is not
        await clock.advance(-50)
    assert clock.now_ns() == 100


async def test_a_task_created_just_before_advance_sleeps_from_when_it_was_created() -> None:
    """Live, a task created at t=0 that sleeps 10 in a loop ticks at 10, 20, 30 during a 35 wait.

    advance() must let ready tasks reach their first sleep before it looks at the sleepers; otherwise
    a driver spawned just before (as Engine.start() spawns the simulated market) starts its schedule
    at the *end* of the first advance, and a run depends on how the first advance was sized.
    """
    clock = ManualClock()
    seen: list[int] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(10)
            seen.append(clock.now_ns())

    task = asyncio.create_task(ticker())  # no yield: the task has not started when advance() is called
    await clock.advance(35)
    assert seen == [10, 20, 30]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
