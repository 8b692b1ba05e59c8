"""Confirm to wire: from ``confirm`` until both legs' HTTP requests are on the wire, with the real connectors.

Set-up: one engine (``build_engine``, LIVE mode, keys from the environment as in production) with a
``kraken`` and a ``coinbase`` venue, trading with :class:`~arbtui.sim.loopback.kraken.LoopbackKraken`
and :class:`~arbtui.sim.loopback.coinbase.LoopbackCoinbase` on 127.0.0.1. The servers run in a
separate process, so their matching, signing checks and book publishing never run on the engine's
event loop. Kraken's BTC/USD sits about 1% below Coinbase's, so a paying ``buy kraken / sell
coinbase`` spread is always there. The engine's REST sessions are warm (``start`` has read balances
and fees over them, and warm-up pairs run first), so every measured pair reuses open keep-alive
connections.

Each sample is one pair, confirmed while nothing else is in flight, then run to its final state
before the next:

- ``t_confirm``: ``time.perf_counter_ns()`` just before ``engine.quote_and_confirm(opportunity_id)``
  (quote and confirm at once, as ARMED mode does; so the figure includes pricing the quote,
  re-checking it on the books and the risk checks);
- ``t_wire`` of a leg: ``time.perf_counter_ns()`` just after the ``transport.write`` (or
  ``writelines``) call that handed the last bytes of that leg's order request (``POST
  /0/private/AddOrder`` carrying its ``cl_ord_id``; ``POST /api/v3/brokerage/orders`` carrying its
  ``client_order_id``) to the kernel. asyncio's socket transport calls ``send()`` inside ``write``
  when nothing is buffered, so when it returns the bytes are in the kernel's socket buffer (on
  loopback: delivered). A write that left bytes in the transport's buffer is counted in
  ``details.writes_buffered`` (expected 0). aiohttp's ``TraceConfig`` hooks are not used for this:
  ``on_request_headers_sent`` fires before the headers are even serialized (aiohttp 3.10+ buffers
  them and writes them together with the body) and ``on_request_chunk_sent`` fires before the body
  write, so neither is the moment the bytes leave;
- confirm -> both on the wire = ``max(t_wire) - t_confirm``; leg skew = ``|t_wire(a) - t_wire(b)|``.

The same run is repeated with ``[execution] legs = "sequential"`` (the second leg is sent only after
the first's reply) for comparison. Also reported, from the executor's analytics: confirm -> both
legs handed to ``place_order`` (the engine's part) and, per venue, hand-off -> wire (the
connector's part).

    arbtui bench --only confirm_to_wire [--quick]
    python benchmarks/confirm_to_wire.py [--quick]
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from asyncio import selector_events
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from arbtui.bench.figure import Figure
from arbtui.domain import stats

NAME = "confirm_to_wire"
TARGET_P99_US = 2000
TARGET_SKEW_P99_US = 1000
KRAKEN_ORDER = b"POST /0/private/AddOrder "
COINBASE_ORDER = b"POST /api/v3/brokerage/orders "
_KRAKEN_CID = re.compile(rb"(?:&|\r\n\r\n)cl_ord_id=([A-Za-z0-9]+)")
_COINBASE_CID = re.compile(rb'"client_order_id":"([A-Za-z0-9]+)"')
_WriteFn = Callable[..., None]


# ------------------------------------------------------------------------------------------------
# The loopback servers, in their own process
# ------------------------------------------------------------------------------------------------


def serve() -> None:
    """Child process: start both loopback servers, print their tables and keys as one JSON line,
    serve until stdin closes (the parent exiting closes it too)."""
    asyncio.run(_serve())


async def _serve() -> None:
    # The servers stand in for venues on other machines: they must not take the engine's core.
    # Niced, a woken server does not preempt the engine inside its send() (on a busy machine it
    # otherwise does, for milliseconds, right after the first leg's write).
    os.nice(19)
    from arbtui.sim.loopback.book_generator import LoopbackMarket
    from arbtui.sim.loopback.coinbase import LoopbackCoinbase
    from arbtui.sim.loopback.kraken import LoopbackKraken

    big = {"USD": Decimal(10) ** 12, "BTC": Decimal(10) ** 6}
    kraken = LoopbackKraken(
        {"BTC/USD": LoopbackMarket("49500", "0.1", "0.00000001", level_size="0.5", depth=25)},
        seed=5,
        interval_ms=50,
        balances=big,
    )
    coinbase = LoopbackCoinbase(
        {"BTC-USD": LoopbackMarket("50000", "0.01", "0.00000001", level_size="0.5", depth=25)},
        seed=5,
        interval_ms=50,
        balances=big,
    )
    await kraken.start()
    await coinbase.start()
    try:
        line = {
            "kraken": {"table": kraken.venue_table("0.0010"), "credentials": kraken.credentials},
            "coinbase": {"table": coinbase.venue_table("0.0010"), "credentials": coinbase.credentials},
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await kraken.stop()
        await coinbase.stop()


@contextmanager
def loopback_process() -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from arbtui.bench.confirm_to_wire import serve; serve()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the loopback server process exited ({proc.wait()})")
        yield json.loads(line)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------------------
# The wire tap
# ------------------------------------------------------------------------------------------------


class WireTap:
    """Stamps the moment each order request's bytes are handed to the kernel (see the module docstring).

    Wraps ``write``/``writelines`` of asyncio's selector socket transport for the duration of the
    ``with`` block (this process only). A write of a ``POST`` is stamped on the way in and on the
    way out and kept; the client order id is read from it later, off the measured path."""

    def __init__(self) -> None:
        self._writes: list[tuple[int, int, bytes, int]] = []  # (in, out, bytes, left in the buffer)
        self.sent: dict[str, int] = {}  # client order id -> perf_counter_ns entering the write
        self.returned: dict[str, int] = {}  # client order id -> perf_counter_ns when the write returned
        self.buffered = 0  # order writes that left bytes in the transport's buffer

    def collect(self) -> None:
        """Read the client order ids of the writes seen since the last call."""
        writes = self._writes[:]
        del self._writes[:]  # the same list: the tapped writes hold it
        for t_in, t_out, data, left in writes:
            if data.startswith(KRAKEN_ORDER):
                match = _KRAKEN_CID.search(data)
            elif data.startswith(COINBASE_ORDER):
                match = _COINBASE_CID.search(data)
            else:
                continue
            if match is not None:
                cid = match.group(1).decode()
                self.sent[cid] = t_in
                self.returned[cid] = t_out
                self.buffered += left > 0

    @contextmanager
    def installed(self) -> Iterator[WireTap]:
        cls: Any = vars(selector_events)["_SelectorSocketTransport"]  # what the default loop's sockets use
        write: _WriteFn = cls.write
        writelines: _WriteFn = cls.writelines
        writes = self._writes

        def tapped_write(transport: Any, data: Any) -> None:
            t_in = time.perf_counter_ns()
            write(transport, data)
            t_out = time.perf_counter_ns()
            if data[:6] == b"POST /":
                writes.append((t_in, t_out, bytes(data), transport.get_write_buffer_size()))

        def tapped_writelines(transport: Any, chunks: Any) -> None:
            chunks = [bytes(c) for c in chunks]
            t_in = time.perf_counter_ns()
            writelines(transport, chunks)
            t_out = time.perf_counter_ns()
            if chunks and chunks[0][:6] == b"POST /":
                writes.append((t_in, t_out, b"".join(chunks), transport.get_write_buffer_size()))

        cls.write, cls.writelines = tapped_write, tapped_writelines
        try:
            yield self
        finally:
            cls.write, cls.writelines = write, writelines


# ------------------------------------------------------------------------------------------------
# The engine
# ------------------------------------------------------------------------------------------------


def config_data(servers: dict[str, Any], legs: str | None) -> dict[str, Any]:
    execution: dict[str, Any] = {
        "order_timeout_ms": 3000,
        "status_retries": 5,
        "status_backoff_ms": 100,
        "unwind_band_bps": "200",
        "breaker_consecutive_failures": 1000,
        "breaker_min_samples": 10000,
    }
    if legs is not None:
        execution["legs"] = legs
    return {
        "mode": "paper",
        "seed": 11,
        "trading": {"live": True},
        "detector": {"min_net_edge_bps": "0", "stale_after_ms": 5000, "expected_latency_ms": 50},
        "risk": {
            "max_notional": "100000",
            "min_expected_pnl": "0",
            "max_open_exposure_per_venue": "1000000000",
            "max_open_exposure_per_market": "1000000000",
            "max_pairs_in_flight": 4,
            "daily_loss_limit": "1000000000",
            "max_book_age_ms": 5000,
        },
        "execution": execution,
        "venues": {
            "kraken": {**servers["kraken"]["table"], "rate_tier": "pro"},
            "coinbase": {**servers["coinbase"]["table"], "rate_per_s": "1000"},
        },
        "markets": {
            "BTC-USD": {
                "base": "BTC",
                "quote": "USD",
                "max_quantity": "0.01",
                "venues": {
                    "kraken": {"symbol": "BTC/USD", "tick_size": "0.1", "lot_size": "0.00000001"},
                    "coinbase": {"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.00000001"},
                },
            },
        },
    }


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _widen_kraken_budgets(engine: Any) -> None:
    """Kraken's REST counter decays at 1 call/s even on the Pro tier, and each pair costs about four
    calls after its order (status, trades, balances): left as is, every pair would wait seconds for
    budget and the trading counter would fill over a long run. The loopback server enforces neither,
    so the bench widens them (Coinbase's is widened through ``rate_per_s``). ``acquire`` still runs on
    the order path; it just never has to wait."""
    from arbtui.venues.kraken import KrakenTrader

    venue = engine.venues["kraken"]
    trader = getattr(getattr(venue, "inner", venue), "trader", None)
    assert isinstance(trader, KrakenTrader), trader
    for budget in (trader.rest_budget, *trader.trading_budgets.values()):
        budget.limit = budget.decay_per_s = 1_000_000.0


@dataclass
class Samples:
    legs: str
    to_wire_us: list[float] = field(default_factory=list)
    skew_us: list[float] = field(default_factory=list)
    to_returned_us: list[float] = field(default_factory=list)  # until both writes had returned
    write_us: list[float] = field(default_factory=list)  # how long each order write took
    to_handoff_us: list[float] = field(default_factory=list)
    handoff_to_wire_us: dict[str, list[float]] = field(default_factory=dict)
    first_venue: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    buffered: int = 0
    load: dict[str, float] = field(default_factory=dict)


@dataclass
class ThreadLoad:
    """How this thread fared over a stretch of wall time: the share it ran on a CPU, and the share it
    was ready to run but waited for one (the kernel's run-queue delay, ``/proc/.../schedstat``).
    On a machine whose cores are busy with other work, every microsecond of the path costs more
    than a microsecond of wall time by about running / (running + waiting)."""

    wall_ns: int
    cpu_ns: int
    waited_ns: int | None

    @classmethod
    def now(cls) -> ThreadLoad:
        return cls(time.perf_counter_ns(), time.thread_time_ns(), _run_delay_ns())

    def since(self) -> dict[str, float]:
        later = ThreadLoad.now()
        wall = max(1, later.wall_ns - self.wall_ns)
        cpu = later.cpu_ns - self.cpu_ns
        out = {"engine_thread_on_cpu_pct": round(100 * cpu / wall, 1)}
        if later.waited_ns is not None and self.waited_ns is not None:
            waited = later.waited_ns - self.waited_ns
            out["engine_thread_waiting_for_a_cpu_pct"] = round(100 * waited / wall, 1)
            out["engine_thread_waiting_share_of_runnable_pct"] = round(100 * waited / max(1, waited + cpu), 1)
        return out


def _run_delay_ns() -> int | None:
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat", encoding="ascii") as fh:
            return int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None  # not Linux, or schedstats off: the figure says less, nothing breaks


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a latency series (NaN when there is none)."""
    found = stats.percentile(values, p)
    return float("nan") if found is None else found  # float ok: a latency statistic, not money


async def _measure_mode(servers: dict[str, Any], legs: str | None, pairs: int, warmup: int, tmp: Path) -> Samples:
    from arbtui.assembly import RunOptions, build_engine
    from arbtui.config import parse_config
    from arbtui.domain.clock import LiveClock
    from arbtui.engine.execution import ConfirmRefusedError

    config = parse_config(config_data(servers, legs), f"bench-{legs or 'parallel'}")
    engine, _ = build_engine(config, LiveClock(), tmp / f"journal-{legs or 'parallel'}.sqlite", RunOptions(live=True))
    assert engine.mode == "live", engine.mode
    samples = Samples(legs or "parallel")
    tap = WireTap()
    gaps = random.Random(7)
    loop = asyncio.get_running_loop()
    try:
        await engine.start()
        _widen_kraken_budgets(engine)
        with tap.installed():
            done = 0
            busy = ThreadLoad.now()  # from the end of the warm-up
            deadline = loop.time() + 30 + pairs * 2.0
            while done < warmup + pairs:
                if loop.time() > deadline:
                    raise RuntimeError(f"only {done} pairs in time ({samples.refused} refusals)")
                spread = next(
                    (
                        s
                        for s in engine.spreads()
                        if s.pays and s.opportunity_id and {leg.venue for leg in s.legs} == {"kraken", "coinbase"}
                    ),
                    None,
                )
                if spread is None or spread.opportunity_id is None:
                    await asyncio.sleep(0.005)
                    continue
                t_confirm = time.perf_counter_ns()
                try:
                    pair_id = engine.quote_and_confirm(spread.opportunity_id)
                except ConfirmRefusedError:
                    samples.refused += 1
                    await asyncio.sleep(0.005)
                    continue
                await engine.executor.wait_idle()
                await asyncio.sleep(gaps.uniform(0, 0.005))  # confirms at no fixed phase of the feeds
                pair = engine.executor.pairs[pair_id]
                tap.collect()
                done += 1
                if done == warmup:
                    busy = ThreadLoad.now()
                if done <= warmup:
                    continue
                samples.states[pair.state.value] = samples.states.get(pair.state.value, 0) + 1
                entries = pair.entries
                wire = [tap.sent[leg.cid] for leg in entries if leg.cid in tap.sent]
                returned = [tap.returned[leg.cid] for leg in entries if leg.cid in tap.returned]
                if len(wire) != 2 or len(returned) != 2:
                    raise RuntimeError(f"pair {pair_id}: a leg's request was never seen on the wire")
                samples.to_wire_us.append((max(wire) - t_confirm) / 1000)
                samples.skew_us.append(abs(wire[0] - wire[1]) / 1000)
                samples.to_returned_us.append((max(returned) - t_confirm) / 1000)
                samples.write_us.extend((r - w) / 1000 for w, r in zip(wire, returned, strict=True))
                handoff = [leg.sent_wall_ns for leg in entries if leg.sent_wall_ns is not None]
                if len(handoff) == 2:
                    samples.to_handoff_us.append((max(handoff) - t_confirm) / 1000)
                    for leg, h, w in zip(entries, handoff, wire, strict=True):
                        samples.handoff_to_wire_us.setdefault(leg.request.venue, []).append((w - h) / 1000)
                first = entries[0].request.venue if wire[0] <= wire[1] else entries[1].request.venue
                samples.first_venue[first] = samples.first_venue.get(first, 0) + 1
        samples.load = busy.since()
    finally:
        await engine.stop()
    samples.buffered = tap.buffered
    return samples


async def _measure(quick: bool, modes: tuple[str | None, ...]) -> list[Samples]:
    warmup = 3 if quick else 30
    out: list[Samples] = []
    with loopback_process() as servers, tempfile.TemporaryDirectory() as tmp_dir:
        env = {
            "XDG_CONFIG_HOME": str(Path(tmp_dir) / "xdg"),  # no secrets file: keys from the environment only
            "ARBTUI_KRAKEN_API_KEY": servers["kraken"]["credentials"]["api_key"],
            "ARBTUI_KRAKEN_API_SECRET": servers["kraken"]["credentials"]["api_secret"],
            "ARBTUI_COINBASE_KEY_NAME": servers["coinbase"]["credentials"]["key_name"],
            "ARBTUI_COINBASE_PRIVATE_KEY": servers["coinbase"]["credentials"]["private_key"],
        }
        with _environment(env):
            for legs in modes:
                # Sequential pairs take a round trip longer each, and are the comparison: fewer of them.
                pairs = 12 if quick else 1000 if legs is None else 300
                out.append(await _measure_mode(servers, legs, pairs, warmup, Path(tmp_dir)))
    return out


def _r(v: float) -> float:
    return round(v, 1)


def run(quick: bool, modes: tuple[str | None, ...] = (None, "sequential")) -> Figure:
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = asyncio.run(_measure(quick, modes))
    values: dict[str, Any] = {}
    details: dict[str, Any] = {
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "measured_s": round(time.perf_counter() - started, 1),
    }
    for s in results:
        k = s.legs
        values[f"{k}_pairs"] = len(s.to_wire_us)
        values[f"{k}_p50_us"] = _r(percentile(s.to_wire_us, 50))
        values[f"{k}_p99_us"] = _r(percentile(s.to_wire_us, 99))
        values[f"{k}_skew_p50_us"] = _r(percentile(s.skew_us, 50))
        values[f"{k}_skew_p99_us"] = _r(percentile(s.skew_us, 99))
        details[k] = {
            "max_us": _r(max(s.to_wire_us)) if s.to_wire_us else None,
            "skew_max_us": _r(max(s.skew_us)) if s.skew_us else None,
            "confirm_to_both_writes_returned_p50_us": _r(percentile(s.to_returned_us, 50)),
            "confirm_to_both_writes_returned_p99_us": _r(percentile(s.to_returned_us, 99)),
            "order_write_call_p50_us": _r(percentile(s.write_us, 50)),
            "order_write_call_p99_us": _r(percentile(s.write_us, 99)),
            "confirm_to_handoff_p50_us": _r(percentile(s.to_handoff_us, 50)),
            "confirm_to_handoff_p99_us": _r(percentile(s.to_handoff_us, 99)),
            **{
                f"handoff_to_wire_{venue}_p50_us": _r(percentile(v, 50))
                for venue, v in sorted(s.handoff_to_wire_us.items())
            },
            **{
                f"handoff_to_wire_{venue}_p99_us": _r(percentile(v, 99))
                for venue, v in sorted(s.handoff_to_wire_us.items())
            },
            **s.load,
            "first_on_the_wire": s.first_venue,
            "pair_states": s.states,
            "refusals": s.refused,
            "writes_buffered": s.buffered,
        }
    p99 = values.get("parallel_p99_us")
    skew = values.get("parallel_skew_p99_us")
    met = None if quick or p99 is None or skew is None else bool(p99 <= TARGET_P99_US and skew <= TARGET_SKEW_P99_US)
    return Figure(
        NAME,
        "confirm to wire (kraken + coinbase on loopback, real connectors, warm connections)",
        values,
        f"both legs on the wire p99 <= {TARGET_P99_US} us after confirm, leg skew p99 <= {TARGET_SKEW_P99_US} us"
        " (parallel legs)",
        met,
        f"arbtui bench --only {NAME}" + (" --quick" if quick else ""),
        "" if not quick else "quick run: too few pairs for a meaningful p99",
        details,
    )
