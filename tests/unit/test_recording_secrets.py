"""A session recorded with keys configured (live Kraken and Coinbase on their loopback servers) holds
no secret: not the keys, not the signatures, not the tokens."""

from __future__ import annotations

import asyncio
import gzip
from decimal import Decimal
from pathlib import Path

import pytest

from arbtui.assembly import RunOptions, build_engine
from arbtui.config import parse_config
from arbtui.domain.clock import LiveClock
from arbtui.domain.orders import OrderRequest, Side, TimeInForce
from arbtui.sim.loopback.book_generator import LoopbackMarket
from arbtui.sim.loopback.coinbase import LoopbackCoinbase
from arbtui.sim.loopback.kraken import LoopbackKraken

D = Decimal


async def test_a_recording_with_live_keys_contains_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kraken = LoopbackKraken({"BTC/USD": LoopbackMarket("65000", "0.1", "0.0001")}, seed=5)
    coinbase = LoopbackCoinbase({"BTC-USD": LoopbackMarket("65000", "0.01", "0.0001")}, seed=5)
    await kraken.start()
    await coinbase.start()
    secrets = {
        "ARBTUI_KRAKEN_API_KEY": kraken.credentials["api_key"],
        "ARBTUI_KRAKEN_API_SECRET": kraken.credentials["api_secret"],
        "ARBTUI_COINBASE_KEY_NAME": coinbase.credentials["key_name"],
        "ARBTUI_COINBASE_PRIVATE_KEY": coinbase.credentials["private_key"],
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    listing = {"lot_size": "0.0001"}
    cfg = parse_config(
        {
            "mode": "paper",
            "trading": {"live": True},
            "venues": {"kraken": kraken.venue_table(), "coinbase": coinbase.venue_table()},
            "markets": {
                "BTC-USD": {
                    "base": "BTC",
                    "quote": "USD",
                    "max_quantity": "1",
                    "venues": {
                        "kraken": {"symbol": "BTC/USD", "tick_size": "0.1", **listing},
                        "coinbase": {"symbol": "BTC-USD", "tick_size": "0.01", **listing},
                    },
                }
            },
        },
        "secrets-test",
    )
    path = tmp_path / "session.jsonl.gz"
    engine, _ = build_engine(cfg, LiveClock(), tmp_path / "j.sqlite", RunOptions(live=True, record=path))
    assert engine.mode == "live"
    await engine.start()
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while engine.book("kraken", "BTC-USD") is None or engine.book("coinbase", "BTC-USD") is None:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        for venue, symbol_book in (("kraken", kraken.book("BTC/USD")), ("coinbase", coinbase.book("BTC-USD"))):
            ask = symbol_book[1][0][0]
            req = OrderRequest(f"asec{venue[:2]}0000001", venue, "BTC-USD", Side.BUY, D("0.001"), ask, TimeInForce.IOC)
            await engine.venues[venue].place_order(req)  # through the recorder, signed with the keys
            await engine.venues[venue].order_status(req.client_order_id)
        await engine.venues["kraken"].balances()
    finally:
        await engine.stop("done")
        await kraken.stop()
        await coinbase.stop()
    text = gzip.decompress(path.read_bytes()).decode()
    assert '"kind":"order"' in text and '"kind":"reply"' in text and '"kind":"frame"' in text
    for value in secrets.values():
        assert value not in text
        for line in value.splitlines():  # no piece of a PEM key either
            if len(line) > 16 and "-----" not in line:
                assert line not in text
    for marker in ("API-Sign", "API-Key", "Bearer", "eyJ"):  # auth headers and JWTs (base64 of '{"')
        assert marker not in text
