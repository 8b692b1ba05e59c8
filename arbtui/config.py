"""``config.toml`` -> frozen dataclasses, with errors that name the file, the key and what was expected.

Every key is checked: an unknown key is an error (a typo must not silently fall back to a default),
as is a wrong type or an impossible value (a negative fee, a tick of 0). Money is read as Decimal:
write it as a string (``"0.0010"``) or a number; numbers go through their shortest decimal form,
never through binary floating point arithmetic. Every number is bounded so that no arithmetic on it can
overflow: a decimal must be finite, within +/-1e18 (:data:`DECIMAL_LIMIT`) and have at most 18 decimal
places (:data:`DECIMAL_PLACES`, a wei); an integer must fit in 63 bits unless its key says less.

Venue URLs are parsed as the client libraries parse them (websockets for ``ws``/``wss``, aiohttp's yarl
for ``http``/``https``): no user info, a host, and the plain scheme only when that host is a loopback
address (127.0.0.0/8, ::1) or exactly ``localhost`` (see :func:`check_venue_url`).

Secrets never live here. Venue keys come from the environment or a secrets file (later issues).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from arbtui.domain.fees import FeeModel, FeeSchedule
from arbtui.domain.instruments import Instruments, Listing, Market, MarketKind
from arbtui.domain.money import precision_of, to_decimal

T = TypeVar("T")

SEED_MAX = 2**64 - 1  # seeds are unsigned 64-bit integers

DEFAULT_CONFIG_NAME = "config.toml"


class ConfigError(Exception):
    """One or more problems in a configuration file; ``str()`` lists them, one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


# ----------------------------------------------------------------------------------------------
# The configuration values
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimVenueConfig:
    """How a simulated venue behaves."""

    ack_latency_ms: int = 40
    latency_jitter_ms: int = 20
    reject_rate: Decimal = Decimal("0.01")
    timeout_rate: Decimal = Decimal("0.005")
    partial_fill_rate: Decimal = Decimal("0.05")
    lag_ms: int = 0
    noise_bps: Decimal = Decimal("1.5")
    update_interval_ms: int = 100
    spread_ticks: int = 1
    depth: int = 15
    balances: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RealVenueConfig:
    """How arbtui connects to a real venue (kind "kraken", "coinbase" or "polymarket")."""

    ws_url: str
    rest_url: str
    depth: int = 10  # book levels subscribed (Kraken: 10, 25, 100, 500 or 1000)
    stale_after_s: Decimal = Decimal("10")  # no frame for this long: the feed is STALE and reconnects
    live_fees: bool = True  # with keys, the account's fee rates from the venue replace the configured ones
    paper_balances: Mapping[str, Decimal] = field(default_factory=dict)  # paper mode: starting balances
    paper_latency_ms: int = 0  # paper mode: simulated order round trip
    rate_tier: str = "starter"  # Kraken: starter | intermediate | pro (trading counter limits)
    rate_per_s: Decimal = Decimal("5")  # Coinbase/Polymarket: conservative private request budget per second
    chain_id: int = 137  # Polymarket: Polygon mainnet (80002 = Amoy testnet)
    signature_type: int = 0  # Polymarket: 0 EOA, 1 POLY_PROXY, 2 POLY_GNOSIS_SAFE
    funder: str | None = None  # Polymarket: the address holding the funds (proxy/safe); default the signer
    neg_risk: bool = False  # Polymarket: the markets are neg-risk (selects the exchange contract)


@dataclass(frozen=True, slots=True)
class VenueConfig:
    name: str
    kind: str  # "simulated" (in-process), "remote-sim" (another process), or a real venue kind
    fees: FeeSchedule
    sim: SimVenueConfig
    url: str | None = None  # remote-sim: the loopback server, e.g. "http://127.0.0.1:8765"
    real: RealVenueConfig | None = None  # real venue kinds only

    @property
    def is_real(self) -> bool:
        return self.real is not None


@dataclass(frozen=True, slots=True)
class ListingConfig:
    venue: str
    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    min_size: Decimal
    price_precision: int
    qty_precision: int


@dataclass(frozen=True, slots=True)
class MarketSimConfig:
    """The simulated fair-value process of a market."""

    start_price: Decimal | None = None  # None only for the NO token of an event (1 - YES)
    volatility_bps: Decimal = Decimal("2.0")  # standard deviation per sqrt(second)
    jump_rate_per_min: Decimal = Decimal("3")
    jump_bps: Decimal = Decimal("25")
    level_size: Decimal = Decimal("1")
    lag_ms: int = 0  # extra quote lag of this market's books on every venue (a slower market maker)


@dataclass(frozen=True, slots=True)
class MarketConfig:
    id: str
    kind: MarketKind
    base: str
    quote: str
    event: str | None
    outcome: str | None
    max_quantity: Decimal
    listings: tuple[ListingConfig, ...]
    sim: MarketSimConfig


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    slippage_floor_bps: Decimal = Decimal("1")
    volatility_multiplier: Decimal = Decimal("1")
    expected_latency_ms: int = 150
    volatility_halflife_s: Decimal = Decimal("30")
    min_net_edge_bps: Decimal = Decimal("0")
    stale_after_ms: int = 3000


@dataclass(frozen=True, slots=True)
class RiskConfig:
    max_notional: Decimal = Decimal("50000")
    min_expected_pnl: Decimal = Decimal("0")
    max_open_exposure_per_venue: Decimal = Decimal("150000")
    max_open_exposure_per_market: Decimal = Decimal("100000")
    max_pairs_in_flight: int = 4
    daily_loss_limit: Decimal = Decimal("2500")
    max_book_age_ms: int = 1500


LEG_MODES = ("parallel", "sequential")  # [execution] legs


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    order_timeout_ms: int = 2000
    status_retries: int = 5
    status_backoff_ms: int = 250
    unwind_band_bps: Decimal = Decimal("50")
    unwind_attempts: int = 4
    unwind_backoff_ms: int = 200
    complete_missing_leg: bool = False
    armed_min_net_edge_bps: Decimal = Decimal("5")
    breaker_consecutive_failures: int = 3
    breaker_window_s: int = 60
    breaker_failure_rate: Decimal = Decimal("0.5")
    breaker_min_samples: int = 10
    legs: str = "parallel"  # "parallel": both entry legs leave together; "sequential": the 2nd after the 1st's answer
    quote_ttl_ms: int = 2000  # a quote shown to the operator can be confirmed for this long, then it refuses
    late_fill_watch_s: int = 60  # a leg every status query said "not found" is watched this long for a late arrival


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """[account]: balance refreshes and position reconciliation (arbtui.engine.balances, .inventory)."""

    balance_refresh_s: int = 30  # every venue's balances are re-read this often (0: only after pairs/refusals)
    balance_retries: int = 3  # attempts per refresh before the venue's balances are left stale
    balance_backoff_ms: int = 500  # wait before the 2nd attempt, doubling each time (capped at 30 s)
    balance_timeout_ms: int = 5000  # one balances() call that takes longer has failed
    drift_tolerance: Decimal = Decimal("0.01")  # quote assets; a base asset uses its listing's lot if larger


@dataclass(frozen=True, slots=True)
class UIConfig:
    refresh_hz: int = 10
    book_depth: int = 10


@dataclass(frozen=True, slots=True)
class TradingConfig:
    live: bool = False  # the config's consent to live trading (also needs --live and keys)
    secrets_file: str | None = None  # where keys are read from (besides the environment); mode 0600


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    mode: str
    seed: int
    venues: tuple[VenueConfig, ...]
    markets: tuple[MarketConfig, ...]
    detector: DetectorConfig
    risk: RiskConfig
    ui: UIConfig
    execution: ExecutionConfig = ExecutionConfig()
    trading: TradingConfig = TradingConfig()
    account: AccountConfig = AccountConfig()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the document as read

    def effective_data(self) -> dict[str, Any]:
        """The configuration as a TOML/JSON-ready document that :func:`parse_config` reads back to this
        config (it never holds secrets: the reader refuses them)."""
        data = dict(self.raw)
        data["seed"] = self.seed
        data["mode"] = self.mode
        return data

    def venue(self, name: str) -> VenueConfig:
        for v in self.venues:
            if v.name == name:
                return v
        raise KeyError(name)

    def instruments(self) -> Instruments:
        markets = [Market(m.id, m.base, m.quote, m.kind, m.event, m.outcome) for m in self.markets]
        listings = [
            Listing(
                lc.venue,
                m.id,
                lc.symbol,
                lc.tick_size,
                lc.lot_size,
                lc.min_size,
                lc.price_precision,
                lc.qty_precision,
            )
            for m in self.markets
            for lc in m.listings
        ]
        return Instruments(markets, listings)


MODES = ("sim", "paper")
SIM_KINDS = ("simulated", "remote-sim")
REAL_KINDS = ("kraken", "coinbase", "polymarket")
VENUE_KINDS = SIM_KINDS + REAL_KINDS
DEFAULT_URLS = {
    "kraken": ("wss://ws.kraken.com/v2", "https://api.kraken.com"),
    "coinbase": ("wss://advanced-trade-ws.coinbase.com", "https://api.coinbase.com"),
    "polymarket": ("wss://ws-subscriptions-clob.polymarket.com/ws/market", "https://clob.polymarket.com"),
}
KRAKEN_DEPTHS = (10, 25, 100, 500, 1000)
RATE_TIERS = ("starter", "intermediate", "pro")
# Keys that look like credentials. Secrets come from the environment or the secrets file only.
_SECRET_KEY = re.compile(
    r"(secret|passphrase|password|private_?key|api_?key|key_?name|jwt|mnemonic|seed_?phrase)", re.IGNORECASE
)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


class _Reader:
    """Walks a parsed TOML table, collecting every problem with its dotted key path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def table(self, raw: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.error(path, f"expected a table, got {_describe(raw)}")
            return {}
        for key in raw:
            if key not in allowed:
                choices = ", ".join(sorted(allowed))
                self.error(_join(path, key), f"unknown key (expected one of: {choices})")
        return raw

    def get(self, tbl: Mapping[str, Any], path: str, key: str, conv: Callable[[Any, str], T], default: T) -> T:
        if key not in tbl:
            return default
        try:
            return conv(tbl[key], _join(path, key))
        except _Bad as bad:
            self.error(_join(path, key), bad.message)
            return default

    def require(
        self, tbl: Mapping[str, Any], path: str, key: str, conv: Callable[[Any, str], T], what: str
    ) -> T | None:
        if key not in tbl:
            self.error(_join(path, key), f"missing (expected {what})")
            return None
        try:
            return conv(tbl[key], _join(path, key))
        except _Bad as bad:
            self.error(_join(path, key), bad.message)
            return None


class _Bad(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a float", bool: "a boolean", dict: "a table", list: "an array"}
    return f"{names.get(type(value), type(value).__name__)} ({value!r})" if not isinstance(value, dict) else "a table"


DECIMAL_LIMIT = Decimal("1e18")  # the largest magnitude of any decimal in a configuration
DECIMAL_PLACES = 18  # the most decimal places of any decimal in a configuration
INT_LIMIT = 2**63 - 1  # the largest magnitude of an integer whose key sets no tighter bound


def _decimal(
    *, min_value: Decimal | None = None, positive: bool = False, max_value: Decimal | None = None
) -> Callable[[Any, str], Decimal]:
    def conv(value: Any, _path: str) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _Bad(f'expected a decimal number (e.g. "0.0010"), got {_describe(value)}')
        if isinstance(value, str) and len(value) > 64:  # no decimal within the bounds needs more
            raise _Bad(f"expected a decimal number of at most 64 characters, got a string of {len(value)}")
        try:
            d = to_decimal(value)
        except (ValueError, TypeError):
            raise _Bad(f'expected a decimal number (e.g. "0.0010"), got {_describe(value)}') from None
        # Bounded before any arithmetic (copy_abs and comparisons never round): "1e999999999" is a
        # valid Decimal that overflows the first sum it enters.
        if d.copy_abs() > DECIMAL_LIMIT or _decimal_places(d) > DECIMAL_PLACES:
            raise _Bad(
                f"expected a finite decimal within +/-1e18 with at most {DECIMAL_PLACES} decimal places, "
                f"got {_describe(value)}"
            )
        if positive and d <= 0:
            raise _Bad(f"expected a number greater than 0, got {value!r}")
        if min_value is not None and d < min_value:
            raise _Bad(f"expected a number >= {min_value}, got {value!r}")
        if max_value is not None and d > max_value:
            raise _Bad(f"expected a number <= {max_value}, got {value!r}")
        return d

    return conv


def _decimal_places(d: Decimal) -> int:
    """The decimal places ``d`` needs (trailing zeros do not count: "0.10" has one)."""
    _, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)  # finite: to_decimal refuses NaN and infinities
    if not any(digits):
        return 0
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing))


def _int(*, min_value: int | None = None, max_value: int | None = None) -> Callable[[Any, str], int]:
    def conv(value: Any, _path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"expected an integer, got {_describe(value)}")
        if max_value is None and abs(value) > INT_LIMIT:
            raise _Bad(f"expected an integer within +/-{INT_LIMIT} (63 bits), got {value}")
        if min_value is not None and value < min_value:
            raise _Bad(f"expected an integer >= {min_value}, got {value}")
        if max_value is not None and value > max_value:
            raise _Bad(f"expected an integer <= {max_value}, got {value}")
        return value

    return conv


def _str(choices: tuple[str, ...] | None = None) -> Callable[[Any, str], str]:
    def conv(value: Any, _path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _Bad(f"expected a non-empty string, got {_describe(value)}")
        if choices is not None and value not in choices:
            raise _Bad(f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value

    return conv


def _bool(value: Any, _path: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {_describe(value)}")
    return value


_RATE = _decimal(min_value=Decimal(0), max_value=Decimal(1))
_PROB = _decimal(min_value=Decimal(0), max_value=Decimal(1))


def _read_sim_venue(r: _Reader, raw: Any, path: str) -> SimVenueConfig:
    d = SimVenueConfig()
    t = r.table(
        raw,
        path,
        {
            "ack_latency_ms",
            "latency_jitter_ms",
            "reject_rate",
            "timeout_rate",
            "partial_fill_rate",
            "lag_ms",
            "noise_bps",
            "update_interval_ms",
            "spread_ticks",
            "depth",
            "balances",
        },
    )
    balances: dict[str, Decimal] = {}
    if "balances" in t:
        bpath = _join(path, "balances")
        btab = r.table(t["balances"], bpath, set(t["balances"]) if isinstance(t["balances"], dict) else set())
        for asset in btab:
            balances[asset] = r.get(btab, bpath, asset, _decimal(min_value=Decimal(0)), Decimal(0))
    return SimVenueConfig(
        ack_latency_ms=r.get(t, path, "ack_latency_ms", _int(min_value=0, max_value=60_000), d.ack_latency_ms),
        latency_jitter_ms=r.get(t, path, "latency_jitter_ms", _int(min_value=0, max_value=60_000), d.latency_jitter_ms),
        reject_rate=r.get(t, path, "reject_rate", _PROB, d.reject_rate),
        timeout_rate=r.get(t, path, "timeout_rate", _PROB, d.timeout_rate),
        partial_fill_rate=r.get(t, path, "partial_fill_rate", _PROB, d.partial_fill_rate),
        lag_ms=r.get(t, path, "lag_ms", _int(min_value=0, max_value=60_000), d.lag_ms),
        noise_bps=r.get(t, path, "noise_bps", _decimal(min_value=Decimal(0)), d.noise_bps),
        update_interval_ms=r.get(
            t, path, "update_interval_ms", _int(min_value=1, max_value=60_000), d.update_interval_ms
        ),
        spread_ticks=r.get(t, path, "spread_ticks", _int(min_value=1, max_value=1000), d.spread_ticks),
        depth=r.get(t, path, "depth", _int(min_value=1, max_value=1000), d.depth),
        balances=balances,
    )


def is_loopback_host(host: str) -> bool:
    """True for a loopback IP address written as one (127.0.0.0/8, ::1) or exactly ``localhost``.

    Spellings a resolver might also take for loopback (``127.1``, ``0x7f.1``, ``2130706433``,
    ``localhost.``) are refused: nothing about a plain-text URL should depend on a resolver's leniency."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_venue_url(url: str, *, secure: str | None, plain: str) -> str:
    """``url`` with its scheme in lower case, if arbtui may connect to it; else ValueError saying why.

    The host is taken exactly as the client libraries take it (websockets' ``parse_uri`` for ``ws``
    and ``wss``, yarl for ``http`` and ``https``, and the standard library's ``urlsplit``), and all
    of them must agree: ``ws://127.0.0.1:@evil.example/`` has the host ``evil.example`` (the part
    before ``@`` is user info). User info is refused in any venue URL (keys never travel in a URL);
    the ``secure`` scheme may name any host, the ``plain`` one only a loopback host
    (:func:`is_loopback_host`). ``secure`` None allows the plain scheme only.
    """
    import urllib.parse

    import yarl
    from websockets.exceptions import InvalidURI
    from websockets.uri import parse_uri

    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("contains spaces or control characters")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    allowed = (plain,) if secure is None else (secure, plain)
    if not sep or scheme not in allowed:
        raise ValueError(f"expected a {' or '.join(f'{s}://' for s in allowed)} URL")
    url = f"{scheme}://{rest}"
    no_user_info = "has user info (user@ or user:password@ before the host); venue URLs may not"
    try:
        split = urllib.parse.urlsplit(url)
        if "@" in split.netloc:  # before the other parsers: their messages would echo a password
            raise ValueError(no_user_info)
        parsed = yarl.URL(url)
        hosts = {split.hostname, parsed.host}
        user_info = parsed.user is not None or parsed.password is not None
        if scheme in ("ws", "wss"):
            ws = parse_uri(url)
            hosts.add(ws.host)
            user_info = user_info or ws.user_info is not None
        _ = split.port, parsed.port  # a port out of range raises here
    except (InvalidURI, ValueError, TypeError) as exc:
        if str(exc) == no_user_info:
            raise
        raise ValueError(f"is not a valid URL ({str(exc).replace(url, _shown_url(url))})") from None
    if user_info:
        raise ValueError(no_user_info)
    names = {h.lower() for h in hosts if h}
    if not names or not all(hosts):
        raise ValueError("has no host")
    if len(names) != 1:
        raise ValueError(f"is read differently by the client libraries (hosts {', '.join(sorted(names))})")
    host = next(iter(names))
    if scheme == plain and not is_loopback_host(host):
        raise ValueError(
            f"uses plain {plain}:// to {host}, which is not a loopback address; plain text is for loopback test "
            "servers only (127.0.0.1, ::1 or localhost)"
        )
    return url.rstrip("/")


def _endpoint(schemes: tuple[str, str]) -> Callable[[Any, str], str]:
    """A venue URL: the secure scheme anywhere, the plain one only on loopback (test servers)."""
    secure, plain = schemes

    def conv(value: Any, _path: str) -> str:
        if not isinstance(value, str):
            raise _Bad(f"expected a {secure}:// URL, got {_describe(value)}")
        try:
            return check_venue_url(value, secure=secure, plain=plain)
        except ValueError as exc:
            raise _Bad(
                f"expected a {secure}:// URL (or {plain}://127.0.0.1:PORT for a loopback test server); "
                f"{_shown_url(value)!r} {exc}"
            ) from None

    return conv


def _read_real_venue(r: _Reader, kind: str, t: Mapping[str, Any], path: str) -> RealVenueConfig:
    d_ws, d_rest = DEFAULT_URLS[kind]
    d = RealVenueConfig(d_ws, d_rest)
    balances: dict[str, Decimal] = {}
    ppath = _join(path, "paper")
    pt = r.table(t.get("paper", {}), ppath, {"balances", "latency_ms"})
    if "balances" in pt:
        bpath = _join(ppath, "balances")
        btab = r.table(pt["balances"], bpath, set(pt["balances"]) if isinstance(pt["balances"], dict) else set())
        for asset in btab:
            balances[asset] = r.get(btab, bpath, asset, _decimal(min_value=Decimal(0)), Decimal(0))
    depth = r.get(t, path, "depth", _int(min_value=1, max_value=1000), d.depth)
    if kind == "kraken" and depth not in KRAKEN_DEPTHS:
        r.error(_join(path, "depth"), f"expected one of Kraken's book depths {KRAKEN_DEPTHS}, got {depth}")
    return RealVenueConfig(
        ws_url=r.get(t, path, "ws_url", _endpoint(("wss", "ws")), d_ws),
        rest_url=r.get(t, path, "rest_url", _endpoint(("https", "http")), d_rest),
        depth=depth,
        stale_after_s=r.get(t, path, "stale_after_s", _decimal(positive=True), d.stale_after_s),
        live_fees=r.get(t, path, "live_fees", _bool, d.live_fees),
        paper_balances=balances,
        paper_latency_ms=r.get(pt, ppath, "latency_ms", _int(min_value=0, max_value=60_000), d.paper_latency_ms),
        rate_tier=r.get(t, path, "rate_tier", _str(RATE_TIERS), d.rate_tier),
        rate_per_s=r.get(t, path, "rate_per_s", _decimal(positive=True), d.rate_per_s),
        chain_id=r.get(t, path, "chain_id", _int(min_value=1), d.chain_id),
        signature_type=r.get(t, path, "signature_type", _int(min_value=0, max_value=3), d.signature_type),
        funder=r.get(t, path, "funder", _str(), None),
        neg_risk=r.get(t, path, "neg_risk", _bool, d.neg_risk),
    )


_REAL_KEYS = {
    "kraken": {"ws_url", "rest_url", "depth", "stale_after_s", "live_fees", "paper", "rate_tier"},
    "coinbase": {"ws_url", "rest_url", "depth", "stale_after_s", "live_fees", "paper", "rate_per_s"},
    "polymarket": {
        "ws_url",
        "rest_url",
        "depth",
        "stale_after_s",
        "live_fees",
        "paper",
        "rate_per_s",
        "chain_id",
        "signature_type",
        "funder",
        "neg_risk",
    },
}


def _read_venue(r: _Reader, name: str, raw: Any, path: str) -> VenueConfig | None:
    kind_raw = raw.get("kind", "simulated") if isinstance(raw, dict) else "simulated"
    extra = _REAL_KEYS.get(kind_raw, set()) if isinstance(kind_raw, str) else set()
    t = r.table(raw, path, {"kind", "fee_model", "maker_fee", "taker_fee", "sim", "url"} | extra)
    kind = r.get(t, path, "kind", _str(VENUE_KINDS), "simulated")
    model = r.get(t, path, "fee_model", _str(tuple(m.value for m in FeeModel)), FeeModel.NOTIONAL.value)
    maker = r.require(t, path, "maker_fee", _RATE, 'a fee rate between 0 and 1, e.g. "0.0025" for 0.25%')
    taker = r.require(t, path, "taker_fee", _RATE, 'a fee rate between 0 and 1, e.g. "0.0040" for 0.40%')
    if kind in REAL_KINDS and "sim" in t:
        r.error(_join(path, "sim"), f"a {kind} venue is real: it has no [sim] table (paper balances go in [paper])")
    sim = _read_sim_venue(r, t.get("sim", {}) if kind in SIM_KINDS else {}, _join(path, "sim"))
    real = _read_real_venue(r, kind, t, path) if kind in REAL_KINDS else None
    url: str | None = None
    if kind == "remote-sim":
        url = r.require(t, path, "url", _loopback_url, "the loopback URL of `python -m arbtui.sim.server`")
    elif "url" in t:
        r.error(_join(path, "url"), 'only allowed when kind = "remote-sim"')
    if maker is None or taker is None:
        return None
    return VenueConfig(name, kind, FeeSchedule(maker, taker, FeeModel(model)), sim, url, real)


def _loopback_url(value: Any, _path: str) -> str:
    expected = "expected an http://127.0.0.1:PORT URL (simulated venues are reached on loopback only)"
    if not isinstance(value, str):
        raise _Bad(f"{expected}, got {_describe(value)}")
    try:
        return check_venue_url(value, secure=None, plain="http")
    except ValueError as exc:
        raise _Bad(f"{expected}; {_shown_url(value)!r} {exc}") from None


def _shown_url(url: str) -> str:
    """``url`` for an error message: user info (which may hold a password) is replaced by ``***``."""
    return re.sub(r"(://)[^/?#]*@", r"\1***@", url)


def _read_listing(r: _Reader, venue: str, raw: Any, path: str, venues: set[str]) -> ListingConfig | None:
    t = r.table(raw, path, {"symbol", "tick_size", "lot_size", "min_size", "price_precision", "qty_precision"})
    if venue not in venues:
        defined = ", ".join(sorted(venues)) or "none"
        r.error(path, f"names venue {venue!r}, which is not defined under [venues] (defined: {defined})")
    symbol = r.require(t, path, "symbol", _str(), 'the venue\'s own symbol, e.g. "BTC/USD"')
    tick = r.require(t, path, "tick_size", _decimal(positive=True), 'a price step greater than 0, e.g. "0.1"')
    lot = r.require(t, path, "lot_size", _decimal(positive=True), 'a size step greater than 0, e.g. "0.00000001"')
    if symbol is None or tick is None or lot is None:
        return None
    min_size = r.get(t, path, "min_size", _decimal(min_value=Decimal(0)), lot)
    pp = r.get(t, path, "price_precision", _int(min_value=0, max_value=18), precision_of(tick))
    qp = r.get(t, path, "qty_precision", _int(min_value=0, max_value=18), precision_of(lot))
    if precision_of(tick) > pp:
        r.error(
            _join(path, "price_precision"),
            f"expected at least {precision_of(tick)} to render tick_size {tick}, got {pp}",
        )
    if precision_of(lot) > qp:
        r.error(
            _join(path, "qty_precision"), f"expected at least {precision_of(lot)} to render lot_size {lot}, got {qp}"
        )
    return ListingConfig(venue, symbol, tick, lot, min_size, pp, qp)


def _read_market(
    r: _Reader, mid: str, raw: Any, path: str, venues: set[str], sim_venues: set[str] | None = None
) -> MarketConfig | None:
    t = r.table(raw, path, {"kind", "base", "quote", "event", "outcome", "max_quantity", "venues", "sim"})
    kind = MarketKind(r.get(t, path, "kind", _str(tuple(k.value for k in MarketKind)), "spot"))
    base = r.require(t, path, "base", _str(), 'the base asset, e.g. "BTC"')
    quote = r.require(t, path, "quote", _str(), 'the quote asset, e.g. "USD"')
    event = outcome = None
    if kind is MarketKind.OUTCOME:
        event = r.require(t, path, "event", _str(), "the binary event this token belongs to")
        outcome = r.require(t, path, "outcome", _str(("YES", "NO")), '"YES" or "NO"')
    else:
        for key in ("event", "outcome"):
            if key in t:
                r.error(_join(path, key), 'only allowed when kind = "outcome"')
    max_qty = r.require(t, path, "max_quantity", _decimal(positive=True), "the largest size per trade, greater than 0")
    listings: list[ListingConfig] = []
    vpath = _join(path, "venues")
    vtab = r.table(t.get("venues", {}), vpath, set(t.get("venues", {})) if isinstance(t.get("venues"), dict) else set())
    if not vtab:
        r.error(vpath, "expected at least one venue listing, e.g. [markets.BTC-USD.venues.kraken]")
    for venue, lraw in vtab.items():
        lc = _read_listing(r, venue, lraw, _join(vpath, venue), venues)
        if lc is not None:
            listings.append(lc)
    lots = sorted({lc.lot_size for lc in listings})
    for i, small in enumerate(lots):  # sorted: each lot must divide every larger one
        for big in lots[i + 1 :]:
            if big % small != 0:
                r.error(vpath, f"lot sizes {small} and {big} must divide each other so both legs can trade one size")
    sd = MarketSimConfig()
    spath = _join(path, "sim")
    st = r.table(
        t.get("sim", {}),
        spath,
        {"start_price", "volatility_bps", "jump_rate_per_min", "jump_bps", "level_size", "lag_ms"},
    )
    simulated = sim_venues is None or any(lc.venue in sim_venues for lc in listings)
    needs_start = simulated and not (kind is MarketKind.OUTCOME and outcome == "NO")
    start = (
        r.require(st, spath, "start_price", _decimal(positive=True), "the simulated starting price, greater than 0")
        if needs_start
        else r.get(st, spath, "start_price", _decimal(positive=True), None)
    )
    if kind is MarketKind.OUTCOME and start is not None and not (0 < start < 1):
        r.error(_join(spath, "start_price"), f"expected a probability strictly between 0 and 1, got {start}")
    sim = MarketSimConfig(
        start_price=start,
        volatility_bps=r.get(st, spath, "volatility_bps", _decimal(min_value=Decimal(0)), sd.volatility_bps),
        jump_rate_per_min=r.get(st, spath, "jump_rate_per_min", _decimal(min_value=Decimal(0)), sd.jump_rate_per_min),
        jump_bps=r.get(st, spath, "jump_bps", _decimal(min_value=Decimal(0)), sd.jump_bps),
        level_size=r.get(st, spath, "level_size", _decimal(positive=True), sd.level_size),
        lag_ms=r.get(st, spath, "lag_ms", _int(min_value=0, max_value=60_000), sd.lag_ms),
    )
    if base is None or quote is None or max_qty is None:
        return None
    return MarketConfig(mid, kind, base, quote, event, outcome, max_qty, tuple(listings), sim)


def parse_config(data: Mapping[str, Any], source: str) -> Config:
    """Validate a parsed TOML document. Raises :class:`ConfigError` listing every problem."""
    r = _Reader(source)
    _refuse_secrets(r, data, "")
    top = r.table(
        dict(data),
        "",
        {"mode", "seed", "venues", "markets", "detector", "risk", "ui", "execution", "trading", "account"},
    )
    mode = r.get(top, "", "mode", _str(MODES), "sim")
    seed = r.get(top, "", "seed", _int(min_value=0, max_value=SEED_MAX), 7)

    venues: list[VenueConfig] = []
    vraw = top.get("venues", {})
    vtab = r.table(vraw, "venues", set(vraw) if isinstance(vraw, dict) else set())
    if not vtab:
        r.error("venues", "expected at least one venue, e.g. [venues.kraken]")
    for name, raw in vtab.items():
        vc = _read_venue(r, name, raw, _join("venues", name))
        if vc is not None:
            venues.append(vc)
    names = set(vtab)
    real_names = sorted(v.name for v in venues if v.is_real)
    sim_names = {v.name for v in venues if not v.is_real}
    if mode == "sim" and real_names:
        r.error("mode", f'expected "paper" because venues {", ".join(real_names)} are real, got "sim"')
    tt = r.table(top.get("trading", {}), "trading", {"live", "secrets_file"})
    trading = TradingConfig(
        live=r.get(tt, "trading", "live", _bool, False),
        secrets_file=r.get(tt, "trading", "secrets_file", _str(), None),
    )

    markets: list[MarketConfig] = []
    mraw = top.get("markets", {})
    mtab = r.table(mraw, "markets", set(mraw) if isinstance(mraw, dict) else set())
    if not mtab:
        r.error("markets", "expected at least one market, e.g. [markets.BTC-USD]")
    for mid, raw in mtab.items():
        mc = _read_market(r, mid, raw, _join("markets", mid), names, sim_names)
        if mc is not None:
            markets.append(mc)
    events: dict[str, set[str]] = {}
    for mc in markets:
        if mc.event is not None and mc.outcome is not None:
            if mc.outcome in events.setdefault(mc.event, set()):
                r.error(f"markets.{mc.id}.outcome", f"event {mc.event!r} already has a {mc.outcome} token")
            events[mc.event].add(mc.outcome)
    for ev, outs in events.items():
        if outs != {"YES", "NO"}:
            r.error("markets", f"event {ev!r} expected both a YES and a NO token, found {', '.join(sorted(outs))}")

    dd = DetectorConfig()
    dt = r.table(
        top.get("detector", {}),
        "detector",
        {
            "slippage_floor_bps",
            "volatility_multiplier",
            "expected_latency_ms",
            "volatility_halflife_s",
            "min_net_edge_bps",
            "stale_after_ms",
        },
    )
    detector = DetectorConfig(
        slippage_floor_bps=r.get(
            dt, "detector", "slippage_floor_bps", _decimal(min_value=Decimal(0)), dd.slippage_floor_bps
        ),
        volatility_multiplier=r.get(
            dt, "detector", "volatility_multiplier", _decimal(min_value=Decimal(0)), dd.volatility_multiplier
        ),
        expected_latency_ms=r.get(
            dt, "detector", "expected_latency_ms", _int(min_value=0, max_value=60_000), dd.expected_latency_ms
        ),
        volatility_halflife_s=r.get(
            dt, "detector", "volatility_halflife_s", _decimal(positive=True), dd.volatility_halflife_s
        ),
        min_net_edge_bps=r.get(dt, "detector", "min_net_edge_bps", _decimal(min_value=Decimal(0)), dd.min_net_edge_bps),
        stale_after_ms=r.get(dt, "detector", "stale_after_ms", _int(min_value=1), dd.stale_after_ms),
    )
    rd = RiskConfig()
    rt = r.table(
        top.get("risk", {}),
        "risk",
        {
            "max_notional",
            "min_expected_pnl",
            "max_open_exposure_per_venue",
            "max_open_exposure_per_market",
            "max_pairs_in_flight",
            "daily_loss_limit",
            "max_book_age_ms",
        },
    )
    pos = _decimal(positive=True)
    risk = RiskConfig(
        max_notional=r.get(rt, "risk", "max_notional", pos, rd.max_notional),
        min_expected_pnl=r.get(rt, "risk", "min_expected_pnl", _decimal(min_value=Decimal(0)), rd.min_expected_pnl),
        max_open_exposure_per_venue=r.get(
            rt, "risk", "max_open_exposure_per_venue", pos, rd.max_open_exposure_per_venue
        ),
        max_open_exposure_per_market=r.get(
            rt, "risk", "max_open_exposure_per_market", pos, rd.max_open_exposure_per_market
        ),
        max_pairs_in_flight=r.get(
            rt, "risk", "max_pairs_in_flight", _int(min_value=1, max_value=1000), rd.max_pairs_in_flight
        ),
        daily_loss_limit=r.get(rt, "risk", "daily_loss_limit", pos, rd.daily_loss_limit),
        max_book_age_ms=r.get(rt, "risk", "max_book_age_ms", _int(min_value=1), rd.max_book_age_ms),
    )
    ed = ExecutionConfig()
    et = r.table(
        top.get("execution", {}),
        "execution",
        {
            "order_timeout_ms",
            "status_retries",
            "status_backoff_ms",
            "unwind_band_bps",
            "unwind_attempts",
            "unwind_backoff_ms",
            "complete_missing_leg",
            "armed_min_net_edge_bps",
            "breaker_consecutive_failures",
            "breaker_window_s",
            "breaker_failure_rate",
            "breaker_min_samples",
            "legs",
            "quote_ttl_ms",
            "late_fill_watch_s",
        },
    )
    ms = _int(min_value=1, max_value=600_000)
    execution = ExecutionConfig(
        order_timeout_ms=r.get(et, "execution", "order_timeout_ms", ms, ed.order_timeout_ms),
        status_retries=r.get(et, "execution", "status_retries", _int(min_value=1, max_value=100), ed.status_retries),
        status_backoff_ms=r.get(et, "execution", "status_backoff_ms", ms, ed.status_backoff_ms),
        unwind_band_bps=r.get(et, "execution", "unwind_band_bps", pos, ed.unwind_band_bps),
        unwind_attempts=r.get(et, "execution", "unwind_attempts", _int(min_value=1, max_value=30), ed.unwind_attempts),
        unwind_backoff_ms=r.get(et, "execution", "unwind_backoff_ms", ms, ed.unwind_backoff_ms),
        complete_missing_leg=r.get(et, "execution", "complete_missing_leg", _bool, ed.complete_missing_leg),
        armed_min_net_edge_bps=r.get(
            et, "execution", "armed_min_net_edge_bps", _decimal(min_value=Decimal(0)), ed.armed_min_net_edge_bps
        ),
        breaker_consecutive_failures=r.get(
            et,
            "execution",
            "breaker_consecutive_failures",
            _int(min_value=1, max_value=1000),
            ed.breaker_consecutive_failures,
        ),
        breaker_window_s=r.get(
            et, "execution", "breaker_window_s", _int(min_value=1, max_value=86_400), ed.breaker_window_s
        ),
        breaker_failure_rate=r.get(et, "execution", "breaker_failure_rate", _PROB, ed.breaker_failure_rate),
        breaker_min_samples=r.get(
            et, "execution", "breaker_min_samples", _int(min_value=1, max_value=10_000), ed.breaker_min_samples
        ),
        legs=r.get(et, "execution", "legs", _str(LEG_MODES), ed.legs),
        quote_ttl_ms=r.get(et, "execution", "quote_ttl_ms", ms, ed.quote_ttl_ms),
        late_fill_watch_s=r.get(
            et, "execution", "late_fill_watch_s", _int(min_value=1, max_value=86_400), ed.late_fill_watch_s
        ),
    )
    ad = AccountConfig()
    at = r.table(
        top.get("account", {}),
        "account",
        {"balance_refresh_s", "balance_retries", "balance_backoff_ms", "balance_timeout_ms", "drift_tolerance"},
    )
    account = AccountConfig(
        balance_refresh_s=r.get(
            at, "account", "balance_refresh_s", _int(min_value=0, max_value=86_400), ad.balance_refresh_s
        ),
        balance_retries=r.get(at, "account", "balance_retries", _int(min_value=1, max_value=20), ad.balance_retries),
        balance_backoff_ms=r.get(at, "account", "balance_backoff_ms", ms, ad.balance_backoff_ms),
        balance_timeout_ms=r.get(at, "account", "balance_timeout_ms", ms, ad.balance_timeout_ms),
        drift_tolerance=r.get(at, "account", "drift_tolerance", _decimal(min_value=Decimal(0)), ad.drift_tolerance),
    )
    ud = UIConfig()
    ut = r.table(top.get("ui", {}), "ui", {"refresh_hz", "book_depth"})
    ui = UIConfig(
        refresh_hz=r.get(ut, "ui", "refresh_hz", _int(min_value=1, max_value=60), ud.refresh_hz),
        book_depth=r.get(ut, "ui", "book_depth", _int(min_value=1, max_value=50), ud.book_depth),
    )
    if r.problems:
        raise ConfigError(source, r.problems)
    return Config(
        source,
        mode,
        seed,
        tuple(venues),
        tuple(markets),
        detector,
        risk,
        ui,
        execution,
        trading,
        account,
        dict(data),
    )


def _refuse_secrets(r: _Reader, data: Any, path: str) -> None:
    """A key that looks like a credential is an error wherever it appears (its value is not echoed)."""
    if not isinstance(data, Mapping):
        return
    for key, value in data.items():
        kpath = _join(path, str(key))
        if isinstance(key, str) and _SECRET_KEY.search(key) and key != "secrets_file":
            r.error(
                kpath,
                "looks like a secret; secrets never go in the config file: set it in the environment "
                "(ARBTUI_<VENUE>_<NAME>) or in the secrets file (see README, Secrets)",
            )
        elif isinstance(value, Mapping):
            _refuse_secrets(r, value, kpath)


def load_config(path: Path) -> Config:
    """Read and validate ``path``; a missing file, bad TOML or bad values raise :class:`ConfigError`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            str(path), [f"not UTF-8 text (a TOML file must be UTF-8): line {line}, column {column}"]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = f"at the end of the file, line {text.count(chr(10)) + 1}"  # always name a line
        raise ConfigError(str(path), [f"not valid TOML: {str(exc).replace('at end of document', where)}"]) from None
    return parse_config(data, str(path))


def default_config_data() -> dict[str, Any]:
    """The built-in demo configuration as a TOML-ready document (what ``arbtui init`` writes)."""
    import copy

    from arbtui.default_config import DEFAULT_CONFIG

    return copy.deepcopy(DEFAULT_CONFIG)  # callers may edit their copy


def default_config() -> Config:
    """The built-in demo, used when no config file is given or found."""
    return parse_config(default_config_data(), "<built-in defaults>")
