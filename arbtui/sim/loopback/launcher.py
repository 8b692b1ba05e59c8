"""Start the loopback venue servers a configuration needs, and point the configuration at them.

``arbtui run --config examples/live-paper.toml --loopback`` runs the real connectors (WebSocket feeds,
REST, auth) against these 127.0.0.1 servers instead of the venues; ``python -m arbtui.sim.loopback``
runs them on their own (fixed ports, for a console started separately).

Each real venue of the configuration gets a server of its kind publishing every listed market: the
starting price is the market's ``[sim] start_price`` when given (100 otherwise; the NO token of an
event starts at 1 - YES), on the listing's own tick and lot.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import replace
from decimal import Decimal
from typing import Any, Protocol

from arbtui.config import REAL_KINDS, Config, VenueConfig
from arbtui.domain.instruments import MarketKind
from arbtui.sim.loopback.book_generator import LoopbackMarket

DEFAULT_PORTS = {"kraken": 18801, "coinbase": 18802, "polymarket": 18803}


class LoopbackServer(Protocol):
    kind: str
    ws_url: str
    rest_url: str

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None: ...

    async def stop(self) -> None: ...


def _server_class(kind: str) -> Any:
    if kind == "kraken":
        from arbtui.sim.loopback.kraken import LoopbackKraken

        return LoopbackKraken
    if kind == "coinbase":
        from arbtui.sim.loopback.coinbase import LoopbackCoinbase

        return LoopbackCoinbase
    from arbtui.sim.loopback.polymarket import LoopbackPolymarket

    return LoopbackPolymarket


def loopback_markets(config: Config, vc: VenueConfig) -> dict[str, LoopbackMarket]:
    """What the server for ``vc`` publishes: every listing of that venue, by the venue's symbol."""
    by_id = {m.id: m for m in config.markets}
    yes_start = {m.event: m.sim.start_price for m in config.markets if m.outcome == "YES"}
    out: dict[str, LoopbackMarket] = {}
    depth = max(25, vc.real.depth if vc.real is not None else 10)
    for m in config.markets:
        for lc in m.listings:
            if lc.venue != vc.name:
                continue
            start = m.sim.start_price
            if start is None and m.outcome == "NO":
                yes = yes_start.get(m.event)
                start = Decimal(1) - yes if yes is not None else Decimal("0.5")
            if start is None:
                start = Decimal("0.5") if m.kind is MarketKind.OUTCOME else Decimal(100)
            out[lc.symbol] = LoopbackMarket(
                start,
                lc.tick_size,
                lc.lot_size,
                level_size=by_id[m.id].sim.level_size,
                depth=depth,
                probability=m.kind is MarketKind.OUTCOME,
            )
    return out


async def start_servers(
    config: Config, *, fixed_ports: bool = False, seed: int | None = None
) -> tuple[list[LoopbackServer], Config]:
    """Start one server per real venue; returns them and ``config`` pointed at them."""
    servers: list[LoopbackServer] = []
    venues: list[VenueConfig] = []
    try:
        for vc in config.venues:
            if vc.kind not in REAL_KINDS or vc.real is None:
                venues.append(vc)
                continue
            cls = _server_class(vc.kind)
            balances = dict(vc.real.paper_balances) or None
            server: LoopbackServer = cls(
                loopback_markets(config, vc), seed=config.seed if seed is None else seed, balances=balances
            )
            await server.start("127.0.0.1", DEFAULT_PORTS[vc.kind] if fixed_ports else 0)
            servers.append(server)
            venues.append(replace(vc, real=replace(vc.real, ws_url=server.ws_url, rest_url=server.rest_url)))
    except BaseException:
        for s in servers:
            with contextlib.suppress(Exception):
                await s.stop()
        raise
    return servers, replace(config, venues=tuple(venues))


class LoopbackThread:
    """The servers on their own event loop in a background thread (the console owns the main loop)."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._servers: list[LoopbackServer] = []
        self._error: BaseException | None = None
        self.config: Config = config
        self._thread = threading.Thread(target=self._run, name="loopback-venues", daemon=True)

    def start(self) -> Config:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.config

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._servers, self.config = self._loop.run_until_complete(start_servers(self._config))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        for s in self._servers:
            self._loop.run_until_complete(s.stop())
        self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
