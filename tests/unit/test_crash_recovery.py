"""Crash safety: the engine is killed with SIGKILL after the intent is journaled and before the
venues answer; a restart reconciles the pair to its true final state by client order id.

The venues live in another process (``python -m arbtui.sim.server``, loopback only) with a 4 s ack
latency, so the engine dies while both orders are still on their way, and the venue keeps the truth.
"""

from __future__ import annotations

import copy
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import tomli_w

from arbtui.config import default_config_data

ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 30


def _spot_only(data: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    del data["venues"]["polymarket"]
    for m in ("FEDCUT-YES", "FEDCUT-NO"):
        del data["markets"][m]
    for market in ("BTC-USD", "ETH-USD"):
        data["markets"][market]["sim"]["jump_rate_per_min"] = "60"  # an opportunity within seconds
        data["markets"][market]["sim"]["jump_bps"] = "40"
    data["risk"]["max_book_age_ms"] = 5000
    data["execution"]["order_timeout_ms"] = 10_000
    for v in data["venues"].values():
        v["sim"]["reject_rate"] = "0"
        v["sim"]["timeout_rate"] = "0"
        v["sim"]["partial_fill_rate"] = "0"
    return data


@pytest.fixture()
def sim_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    server_cfg = tmp_path / "server.toml"
    server_cfg.write_text(tomli_w.dumps(_spot_only(default_config_data())), encoding="utf-8")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arbtui.sim.server",
            "--config",
            str(server_cfg),
            "--port",
            "0",
            "--ack-latency-ms",
            "4000",
            "--latency-jitter-ms",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("LISTENING http://127.0.0.1:"), line
        url = line.split()[1]
        engine_data = _spot_only(default_config_data())
        for name in ("kraken", "coinbase"):
            engine_data["venues"][name]["kind"] = "remote-sim"
            engine_data["venues"][name]["url"] = url
        engine_cfg = tmp_path / "engine.toml"
        engine_cfg.write_text(tomli_w.dumps(engine_data), encoding="utf-8")
        yield url, engine_cfg
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _leg_venues(journal: Path, pair_id: str) -> list[str]:
    with sqlite3.connect(journal) as conn:
        return [r[0] for r in conn.execute("SELECT venue FROM legs WHERE pair_id=? ORDER BY idx", (pair_id,))]


def test_sigkill_after_intent_then_restart_reconciles(sim_server: tuple[str, Path], tmp_path: Path) -> None:
    import urllib.request

    url, engine_cfg = sim_server
    journal = tmp_path / "journal.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    engine = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_engine", "dispatch", str(engine_cfg), str(journal)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert engine.stdout is not None
        line = engine.stdout.readline()
        assert line.startswith("DISPATCHED"), (line, engine.stderr.read() if engine.poll() is not None else "")
        engine.send_signal(signal.SIGKILL)  # no chance to write anything else
        engine.wait(timeout=20)
    finally:
        if engine.poll() is None:
            engine.kill()
    _, pair_id, *cids = line.split()
    assert len(cids) == 2

    # What the killed engine left: the intent and both legs, not final.
    with sqlite3.connect(journal) as conn:
        (state,) = conn.execute("SELECT state FROM pairs WHERE pair_id=?", (pair_id,)).fetchone()
        legs = conn.execute(
            "SELECT client_order_id, state FROM legs WHERE pair_id=? ORDER BY idx", (pair_id,)
        ).fetchall()
    assert state == "dispatching"
    assert [c for c, _ in legs] == cids
    assert all(s in ("new", "sent") for _, s in legs)

    # The venue's truth, once it has answered (4 s ack latency), asked directly.
    def venue_truth(venue: str, cid: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v/{venue}/orders/{cid}", timeout=10) as resp:
                    report: dict[str, Any] = orjson.loads(resp.read())
                if report["status"] in ("filled", "expired", "rejected", "cancelled"):
                    return report
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{venue} never finished {cid}"
            time.sleep(0.2)

    # The venues finish both orders while the engine is dead (4 s ack latency): their truth.
    truth = [venue_truth(venue, cid) for venue, cid in zip(_leg_venues(journal, pair_id), cids, strict=True)]

    # Restart on the same journal: the pair is reconciled against the venues.
    out = subprocess.run(
        [sys.executable, "-m", "tests.crash_engine", "reconcile", str(engine_cfg), str(journal)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    pairs = {p["pair"]: p for p in orjson.loads(out.stdout.strip().splitlines()[-1])}
    pair = pairs[pair_id]
    entry = [leg for leg in pair["legs"] if leg["role"] == "entry"]
    # Each entry leg now shows exactly what the venue says happened to it.
    for leg, report in zip(entry, truth, strict=True):
        assert Decimal(leg["filled"]) == Decimal(report["filled_quantity"])
        assert leg["state"] == report["status"]
    filled = [Decimal(r["filled_quantity"]) for r in truth]
    if filled[0] == filled[1] == 0:
        assert pair["state"] == "aborted"
    elif filled[0] == filled[1]:
        assert pair["state"] == "completed"
    else:
        assert pair["state"] in ("unwound", "broken")
    assert pair["state"] in ("completed", "aborted", "unwound", "broken")
    if pair["state"] != "broken":
        assert pair["exposure"] == []

    with sqlite3.connect(journal) as conn:
        (final,) = conn.execute("SELECT state FROM pairs WHERE pair_id=?", (pair_id,)).fetchone()
        triggers = [
            r[0]
            for r in conn.execute(
                "SELECT trigger FROM transitions WHERE entity='pair' AND entity_id=? ORDER BY id", (pair_id,)
            )
        ]
    assert final == pair["state"]
    assert "restart" in triggers  # it went through RECONCILING
