"""Session recording and replay: round trip, determinism, recorded outcomes, bad files."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from arbtui.assembly import RunOptions, build_engine
from arbtui.cli import main
from arbtui.config import default_config
from arbtui.domain.clock import NS_PER_MS, ManualClock
from arbtui.domain.events import Event, OpportunityDetected
from arbtui.engine.execution import ConfirmRefusedError
from arbtui.replay.player import ReplayPlayer
from arbtui.replay.session_format import SessionError, SessionReader
from arbtui.venues.live import PaperTrader

DATA = Path(__file__).parent.parent / "data" / "sim-session-15s.jsonl.gz"
START = 1_795_617_000 * 1_000_000_000


async def record(path: Path, seconds: int, *, armed: bool) -> tuple[list[tuple[int, str, str, str]], dict[str, Any]]:
    """A seeded simulated run recorded to ``path``; returns its opportunities and pair outcomes."""
    clock = ManualClock(START)
    engine, _ = build_engine(default_config(), clock, path.parent / "journal.sqlite", RunOptions(record=path))
    seen: list[tuple[int, str, str, str]] = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, OpportunityDetected):
            s = ev.spread
            seen.append((ev.ts_ns, s.opportunity_id or "", s.key, str(s.net_bps)))

    engine.subscribe(on_event)
    await engine.start()
    if armed:
        engine.set_armed(True)
    for _ in range(seconds * 10):
        await clock.advance(100 * NS_PER_MS)
    if armed:
        engine.set_armed(False)
    while engine.executor.in_flight():
        await clock.advance(100 * NS_PER_MS)
    outcomes = {pid: (p.state.value, str(p.realized_pnl)) for pid, p in engine.executor.pairs.items()}
    await engine.stop("done")
    return seen, outcomes


async def test_round_trip_replays_the_same_opportunities_in_the_same_order(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    seen, _ = await record(path, 12, armed=False)
    assert len(seen) >= 2  # the seeded demo finds paying spreads within 12 s
    player = ReplayPlayer(path)
    summary = await player.run()
    assert player.stats.opportunities == seen
    assert summary["opportunities"] == len(seen)
    kraken = summary["venues"]["kraken"]
    assert kraken["frames"] > 50 and kraken["book_updates"] == kraken["frames"] and kraken["malformed"] == 0


async def test_two_replays_print_the_same_summary(tmp_path: Path) -> None:
    first = await ReplayPlayer(DATA, journal_path=tmp_path / "a.sqlite").run()
    second = await ReplayPlayer(DATA, journal_path=tmp_path / "b.sqlite").run()
    for s in (first, second):
        assert s.pop("elapsed_s") >= 0 and s.pop("frames_per_s") > 0
    assert first == second
    assert first["frames"] > 500 and set(first["venues"]) == {"kraken", "coinbase", "polymarket"}


async def test_actions_reproduce_the_recorded_pair_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "armed.jsonl.gz"
    _, outcomes = await record(path, 15, armed=True)
    assert len(outcomes) >= 4 and {s for s, _ in outcomes.values()} >= {"completed"}
    player = ReplayPlayer(path, actions=True)
    summary = await player.run()
    replayed = {pid: (p.state.value, str(p.realized_pnl)) for pid, p in player.engine.executor.pairs.items()}
    assert replayed == outcomes
    assert summary["actions"] == {"applied": 2, "refused": 0}  # arm, disarm


async def test_without_actions_the_replay_trades_on_paper_against_replayed_books(tmp_path: Path) -> None:
    player = ReplayPlayer(DATA, journal_path=tmp_path / "p.sqlite")

    async def arm_when_started() -> None:  # the operator arms the replay: paper fills, no recorded replies
        await player.started.wait()
        player.engine.set_armed(True)

    arm = asyncio.create_task(arm_when_started())
    summary = await player.run()
    await arm
    assert summary["pairs"]["total"] >= 1
    assert all(isinstance(v.trader, PaperTrader) for v in player.venues.values())
    legs = [leg for p in player.engine.executor.pairs.values() for leg in p.view().legs]
    filled = [leg for leg in legs if leg.filled > 0]
    assert filled, "paper fills against the replayed books"
    for leg in filled:  # a paper fill happens at a price the replayed book offered, within the limit
        assert leg.average_price is not None
        assert leg.average_price <= leg.limit_price if leg.side.value == "buy" else leg.average_price >= leg.limit_price


def _write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def _sample_lines() -> list[bytes]:
    with gzip.open(DATA, "rb") as fh:
        return [next(fh) for _ in range(40)]


def test_a_corrupt_line_stops_the_replay_naming_it_and_skip_bad_counts_it(tmp_path: Path) -> None:
    lines = _sample_lines()
    lines[9] = b'{"t": 17956170, "kind": "frame", "venue": "kraken"\n'  # cut JSON
    path = tmp_path / "bad.jsonl"
    _write_lines(path, lines)
    with pytest.raises(SessionError, match=r"bad\.jsonl:10: not JSON"):
        list(SessionReader(path))
    reader = SessionReader(path, skip_bad=True)
    assert len(list(reader)) == 38 and reader.skipped == 1
    assert main(["replay", str(path), "--headless", "--json"]) == 2
    assert main(["replay", str(path), "--headless", "--json", "--skip-bad"]) == 0


def test_truncated_files_name_the_line(tmp_path: Path) -> None:
    lines = _sample_lines()
    path = tmp_path / "cut.jsonl"
    _write_lines(path, [*lines[:20], lines[20][:35]])  # the writer died mid-line
    with pytest.raises(SessionError, match=r"cut\.jsonl:21: truncated last line"):
        list(SessionReader(path))
    gz = tmp_path / "cut.jsonl.gz"
    data = gzip.compress(b"".join(lines))
    gz.write_bytes(data[: len(data) // 2])
    with pytest.raises(SessionError, match=r"cut\.jsonl\.gz:\d+: (the compressed stream ends early|truncated)"):
        list(SessionReader(gz))


def test_unknown_format_version_and_kinds_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"format": "something-else"}\n')
    with pytest.raises(SessionError, match="x.jsonl:1: not an arbtui session"):
        SessionReader(path)
    header = orjson.loads(_sample_lines()[0])
    header["version"] = 99
    path.write_bytes(orjson.dumps(header) + b"\n")
    with pytest.raises(SessionError, match="version 99 is not supported"):
        SessionReader(path)
    header["version"] = 1
    path.write_bytes(orjson.dumps(header) + b'\n{"t": 1, "kind": "telepathy"}\n')
    with pytest.raises(SessionError, match="x.jsonl:2: unknown event kind 'telepathy'"):
        list(SessionReader(path))
    path.write_bytes(b"")
    with pytest.raises(SessionError, match="empty file"):
        SessionReader(path)
    with pytest.raises(SessionError, match="no such file"):
        SessionReader(tmp_path / "missing.jsonl")


def test_cli_replay_prints_one_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(DATA), "--headless", "--json"]) == 0
    summary = orjson.loads(capsys.readouterr().out)
    for key in ("frames", "venues", "opportunities", "pairs", "pnl", "elapsed_s", "frames_per_s"):
        assert key in summary
    for counters in summary["venues"].values():
        assert set(counters) == {"frames", "book_updates", "integrity_failures", "resyncs", "malformed"}
    assert main(["replay", str(DATA), "--headless", "--json", "--actions"]) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["pairs"] == {"total": 11, "by_state": {"completed": 6, "unwound": 5}}
    assert summary["pnl"] == "152.14"


async def test_a_clock_stepping_back_never_makes_a_session_go_back_in_time(tmp_path: Path) -> None:
    from arbtui.replay.recorder import SessionRecorder

    clock = ManualClock(START)
    recorder = SessionRecorder(default_config(), clock)
    path = tmp_path / "ntp.jsonl"
    recorder.start(path)
    recorder.frame("kraken", "market", '{"m":"BTC-USD"}', START + 5_000)
    recorder.frame("kraken", "market", '{"m":"BTC-USD"}', START + 1_000)  # the wall clock stepped back
    recorder.frame("kraken", "market", '{"m":"BTC-USD"}', START + 9_000)
    recorder.stop()
    times = [ev["t"] for _, ev in SessionReader(path)]
    assert times == [START + 5_000, START + 5_000, START + 9_000]


# --- Kraken-format sessions and the reader's fast path ---------------------------------------------

KRAKEN_STREAM = Path(__file__).parent.parent / "data" / "kraken-v2-book-btcusd-2023-07-30.jsonl"


async def test_a_kraken_session_replays_every_frame_through_the_kraken_feed(tmp_path: Path) -> None:
    """A one-venue Kraken session (paper): every recorded frame goes through KrakenFeed (checksums
    verified) and the engine's on_book path; the replayed book is the one the frames describe."""
    from arbtui.bench.replay import write_session
    from arbtui.domain.book import OrderBook
    from arbtui.venues.kraken_book import BookFrame, parse_frame

    frames = KRAKEN_STREAM.read_bytes().splitlines()
    for name in ("k.jsonl", "k.jsonl.gz"):
        path = tmp_path / name
        assert write_session(path, frames) == 510
        player = ReplayPlayer(path)
        summary = await player.run(stop_at_end=False)
        assert summary["frames"] == 510
        assert summary["venues"]["kraken"] == {
            "frames": 510,
            "book_updates": 510,
            "integrity_failures": 0,
            "resyncs": 0,
            "malformed": 0,
        }
        assert player.engine.book_updates == 510
        ref = OrderBook(depth=10)
        for i, raw in enumerate(frames):
            frame = parse_frame(raw)
            assert isinstance(frame, BookFrame)
            (ref.apply_snapshot if frame.snapshot else ref.apply_update)(frame.bids, frame.asks, i)
        book = player.engine.book("kraken", "BTC-USD")
        assert book is not None
        assert list(book.bids) == list(ref.bids) and list(book.asks) == list(ref.asks)
        await player.engine.stop("done")


def test_the_reader_fast_path_refuses_what_the_careful_path_refuses(tmp_path: Path) -> None:
    """Well-formed frames take a shortcut through the reader; anything else must still be named."""
    header = _sample_lines()[0]
    good = b'{"t": 10, "kind": "frame", "venue": "kraken", "stream": "market", "raw": "{}"}\n'
    bad_lines = {
        b'{"t": true, "kind": "frame", "venue": "kraken", "stream": "market", "raw": "{}"}\n': 'integer "t"',
        b'{"t": 11, "kind": "frame", "venue": "kraken", "stream": "market", "raw": 5}\n': "strings",
        b'{"t": 11, "kind": "frame", "venue": "kraken", "raw": "{}"}\n': "strings",
        b'{"t": 9, "kind": "frame", "venue": "kraken", "stream": "market", "raw": "{}"}\n': "time goes backwards",
        b'[{"t": 11}]\n': "JSON object",
        b'{"t": 11.5, "kind": "connect", "venue": "kraken", "stream": "market"}\n': 'integer "t"',
        b'{"t": 11, "kind": "frame", "venue": "kraken", "stream": "market", "raw": "{}"': "truncated last line",
    }
    for i, (bad, message) in enumerate(bad_lines.items()):
        path = tmp_path / f"s{i}.jsonl"
        later = [good.replace(b"10", b"12")] if bad.endswith(b"\n") else []  # a cut line can only be the last
        _write_lines(path, [header, good, bad, *later])
        with pytest.raises(SessionError, match=rf"s{i}\.jsonl:3: .*{message}"):
            list(SessionReader(path))
        if bad.endswith(b"\n"):
            reader = SessionReader(path, skip_bad=True)
            assert [n for n, _ in reader] == [2, 4] and reader.skipped == 1
    path = tmp_path / "ok.jsonl"
    connect = b'{"t": 10, "kind": "connect", "venue": "kraken", "stream": "market"}\n'
    _write_lines(path, [header, connect, good, good])
    assert [(n, ev["kind"]) for n, ev in SessionReader(path)] == [(2, "connect"), (3, "frame"), (4, "frame")]


async def test_the_operator_s_quotes_replay_to_the_same_pairs(tmp_path: Path) -> None:
    """A session where the operator opened the confirm modal (a quote), cancelled one, simulated and
    confirmed: the replay quotes the same things at the same instants and sends the same legs."""
    path = tmp_path / "operator.jsonl.gz"
    clock = ManualClock(START)
    engine, _ = build_engine(default_config(), clock, tmp_path / "journal.sqlite", RunOptions(record=path))
    await engine.start()
    done: list[str] = []
    cancelled = simulated = 0
    for _ in range(400):
        await clock.advance(100 * NS_PER_MS)
        if engine.executor.in_flight():
            continue
        paying = [s for s in engine.detector.spreads() if s.pays and s.opportunity_id]
        if not paying:
            continue
        oid = paying[0].opportunity_id
        assert oid is not None
        quote = engine.quote(oid)
        assert quote is not None
        if cancelled == 0:
            engine.cancel_quote(quote.quote_id)
            cancelled += 1
            continue
        if simulated == 0:
            engine.simulate(oid)
            simulated += 1
        try:
            done.append(engine.confirm(quote.quote_id))
        except ConfirmRefusedError:  # a refusal is recorded too, and replays as one
            pass
        if len(done) >= 3:
            break
    while engine.executor.in_flight():
        await clock.advance(100 * NS_PER_MS)
    legs = {
        pid: [(r.venue, r.side, r.quantity, r.limit_price) for r in (leg.request for leg in p.legs)]
        for pid, p in engine.executor.pairs.items()
    }
    outcomes = {pid: (p.state.value, str(p.realized_pnl)) for pid, p in engine.executor.pairs.items()}
    await engine.stop("done")
    assert len(done) >= 3 and cancelled == 1 and simulated == 1

    player = ReplayPlayer(path, actions=True, journal_path=tmp_path / "replay.sqlite")
    summary = await player.run()
    ex = player.engine.executor
    assert {pid: (p.state.value, str(p.realized_pnl)) for pid, p in ex.pairs.items()} == outcomes
    replayed = {
        pid: [(r.venue, r.side, r.quantity, r.limit_price) for r in (leg.request for leg in p.legs)]
        for pid, p in ex.pairs.items()
    }
    assert replayed == legs
    assert summary["actions"]["refused"] == 0
