"""Kraken WebSocket v2 ``book`` channel: parse frames, keep the books, verify every checksum.

Rules (Kraken's book guide, docs.kraken.com/api/docs/guides/spot-ws-book-v2):

- ``qty`` is the absolute size at a price; 0 deletes the level; all levels of a frame are applied in
  order (a later entry for the same price wins) before the checksum is computed;
- after every frame the book is truncated to the subscribed depth (Kraken sends no deletes for
  levels that fall out of scope);
- the CRC32 covers the top 10 asks (low to high) then the top 10 bids (high to low), each level as
  ``price_token + qty_token``, a token being the value rendered at the instrument's precision with
  the ``.`` removed and leading zeros stripped. Prices and sizes arrive as JSON numbers that lose
  trailing zeros, hence the rendering at the precision, never ``repr``;
- the snapshot carries a checksum too, and is verified like every update;
- a mismatch means the local book is wrong: the caller resubscribes for a fresh snapshot.

Values go through ``Decimal(repr(float))``: the shortest repr of a JSON number is its wire text.

Two implementations of the same rules live here:

- the **reference** (:func:`book_frame`, :func:`book_checksum`, :func:`levels_checksum`): Decimal
  levels in a plain :class:`~arbtui.domain.book.OrderBook`, every token rendered from the Decimal.
  Simple and obviously right; the tests and the benchmark's stream generator use it as the oracle;
- the **hot path** (:class:`KrakenBook`): what the feed keeps. Each side holds its levels best first
  in parallel lists (float key, the level's checksum token, the float quantity until somebody reads
  the level as Decimals). A level's token is rendered once, when the level is written; each side
  keeps its top ten tokens joined until one of them changes, so a frame's checksum is one join (of
  the side it touched) and one or two ``zlib.crc32`` calls. The Decimal levels the engine reads
  (:class:`~arbtui.domain.book.OrderBook` API) are made only when read, from the float's shortest
  repr, which is exactly what the reference stores.

Why floats are exact here (``# float ok``): orjson turns a JSON number into the double nearest to
its text, and the reference itself reads every number through that double (``Decimal(repr(f))``),
so a float key is the reference's value, and two floats compare as their Decimals do. The token is
``round(value * 10**precision)``, taken only when the product is within 0.001 of an integer below
2**52: the product's error is below ``n * 2**-52``, so the rounded integer is exactly the one the
Decimal rendering gives; anything else (more decimals than the precision, huge or tiny values)
takes the reference path. Numbers sent as strings or integers (Kraken sends neither) take the
reference path too and are kept only if their double gives them back exactly, which holds for any
value of at most 15 significant digits (DBL_DIG): every price and size Kraken publishes.

:class:`KrakenBooks` is the socket-free core (tests); :class:`arbtui.venues.kraken.KrakenFeed` is the
live (and replayed) feed built on the same :class:`KrakenBook`.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from itertools import islice
from typing import Any

import orjson

from arbtui.domain.book import BookSide, Level, OrderBook
from arbtui.venues.wire import MalformedFrame

__all__ = [
    "CHECKSUM_LEVELS",
    "BookFrame",
    "KrakenBook",
    "KrakenBooks",
    "TickSide",
    "MalformedFrame",
    "book_checksum",
    "book_frame",
    "checksum_token",
    "levels_checksum",
    "parse_frame",
    "ParsedLevel",
]

CHECKSUM_LEVELS = 10
_ONE = Decimal(1)


@lru_cache(maxsize=1 << 16)
def checksum_token(value: Decimal, precision: int) -> str:
    """``value`` at ``precision`` decimals, without the ``.`` and without leading zeros.

    Scaling to an integer does both at once: ``45285.2`` at 1 -> ``452852``; ``0.001`` at 8 ->
    ``100000``. A value with more decimals than the precision is rounded half-even (Kraken never
    sends one; the rounding only keeps a corrupt value from raising). Cached: a frame changes a
    few levels, the checksum renders twenty, so most tokens were rendered for an earlier frame
    (this was ~70% of the feed's CPU time uncached). Equal Decimals have equal tokens, so the cache
    is keyed by value, not by spelling.
    """
    scaled = value.scaleb(precision)
    if scaled != scaled.to_integral_value():
        scaled = scaled.quantize(_ONE, rounding=ROUND_HALF_EVEN)
    n = int(scaled)
    return str(n) if n else ""


def levels_checksum(asks: Iterable[Level], bids: Iterable[Level], price_precision: int, qty_precision: int) -> int:
    """CRC32 of the first 10 of ``asks`` (best first = ascending) then of ``bids`` (best first = descending)."""
    tok = checksum_token
    pp, qp = price_precision, qty_precision
    text = "".join([tok(p, pp) + tok(q, qp) for p, q in islice(asks, CHECKSUM_LEVELS)])
    text += "".join([tok(p, pp) + tok(q, qp) for p, q in islice(bids, CHECKSUM_LEVELS)])
    return zlib.crc32(text.encode("ascii"))


def book_checksum(book: OrderBook, price_precision: int, qty_precision: int) -> int:
    """The checksum Kraken would send for ``book`` (which must already be truncated to its depth)."""
    return levels_checksum(
        book.asks.top(CHECKSUM_LEVELS), book.bids.top(CHECKSUM_LEVELS), price_precision, qty_precision
    )


@dataclass(frozen=True, slots=True)
class BookFrame:
    symbol: str
    snapshot: bool
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int | None


def _number(value: Any, where: str) -> Decimal:
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest repr is the JSON text Kraken sent
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise MalformedFrame(f"{where}: not a number: {value!r}") from None
    raise MalformedFrame(f"{where}: price and qty must be numbers")


def _levels(raw: Any, where: str) -> tuple[Level, ...]:
    if not isinstance(raw, list):
        raise MalformedFrame(f"{where}: expected a list of levels")
    out = []
    for level in raw:
        try:
            price, qty = level["price"], level["qty"]
        except (TypeError, KeyError):
            raise MalformedFrame(f"{where}: a level without price and qty") from None
        p = _number(price, where)
        q = _number(qty, where)
        if not p.is_finite() or not q.is_finite() or p <= 0 or q < 0:
            raise MalformedFrame(f"{where}: impossible level {price}/{qty}")
        out.append((p, q))
    return tuple(out)


def book_frame(msg: dict[str, Any]) -> BookFrame:
    """The book snapshot or update in a decoded ``"channel": "book"`` message. Raises :class:`MalformedFrame`."""
    kind = msg.get("type")
    data = msg.get("data")
    if (
        kind not in ("snapshot", "update")
        or not isinstance(data, list)
        or len(data) != 1
        or not isinstance(data[0], dict)
    ):
        raise MalformedFrame("book frame without a type or a single data element")
    d = data[0]
    symbol = d.get("symbol")
    if not isinstance(symbol, str):
        raise MalformedFrame("book frame without a symbol")
    checksum = d.get("checksum")
    if checksum is not None and (isinstance(checksum, bool) or not isinstance(checksum, int)):
        raise MalformedFrame("checksum is not an integer")
    return BookFrame(
        symbol, kind == "snapshot", _levels(d.get("bids", []), "bids"), _levels(d.get("asks", []), "asks"), checksum
    )


def parse_frame(raw: str | bytes) -> BookFrame | str | None:
    """A ``book`` frame, or the channel name of another frame ("heartbeat", "status", ...), or None
    for a method reply (subscribe acks). Raises :class:`MalformedFrame`."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise MalformedFrame("not a JSON object")
    if "method" in msg:
        return None
    channel = msg.get("channel")
    if not isinstance(channel, str):
        raise MalformedFrame("no channel")
    if channel != "book":
        return channel
    return book_frame(msg)


# ------------------------------------------------------------------------------------------------
# The hot path: a book that keeps each level's checksum token beside it
# ------------------------------------------------------------------------------------------------

_TOLERANCE = 1e-3  # float ok: how far from a whole number of ticks a product may be (module docstring)
_MAX_TICKS_F = 4503599627370496.0  # float ok: 2**52, below which a product's error is < 0.25 tick
_DECIMALS: dict[float, Decimal] = {}
_DECIMALS_MAX = 1 << 14
_PRICE_TOKENS_MAX = 1 << 12
_NO_LEVELS: list[Any] = []

ParsedLevel = tuple[float, float, str]  # (key, quantity, token); key = price (asks) or -price (bids)


def _decimal(value: float) -> Decimal:
    """The Decimal a wire number stands for (its shortest repr), cached: prices recur."""
    d = _DECIMALS.get(value)
    if d is None:
        if len(_DECIMALS) >= _DECIMALS_MAX:
            _DECIMALS.clear()  # bounded; a miss only costs one conversion
        d = _DECIMALS[value] = Decimal(repr(value))
    return d


def _reference_level(price: Any, qty: Any, sign: float, pp: int, qp: int) -> ParsedLevel:
    """One level through the reference rules (strings, integers, values off the tick grid)."""
    where = "bids" if sign < 0 else "asks"
    p = price if type(price) is Decimal else _number(price, where)
    q = qty if type(qty) is Decimal else _number(qty, where)
    if not p.is_finite() or not q.is_finite() or p <= 0 or q < 0:
        raise MalformedFrame(f"{where}: impossible level {price}/{qty}")
    key = float(p)  # float ok: checked to round trip just below
    qf = float(q)  # float ok: idem
    if Decimal(repr(key)) != p or Decimal(repr(qf)) != q:
        raise MalformedFrame(f"{where}: {price}/{qty} has more digits than Kraken publishes")
    return sign * key, qf, (checksum_token(p, pp) + checksum_token(q, qp)) if qf else ""


def _wire_ticks(value: float, scale: float) -> int:
    """``value * scale`` as a whole number of ticks (>= 1), or 0 when the fast path cannot prove it."""
    x = value * scale  # float ok: see the module docstring
    if not 0.5 <= x < _MAX_TICKS_F:
        return 0
    n = round(x)
    return n if -_TOLERANCE <= x - n <= _TOLERANCE else 0


class TickSide(BookSide):
    """One side of a :class:`KrakenBook`: levels best first in parallel lists.

    ``keys`` are the prices (asks) or the negated prices (bids), ascending, so index 0 is the best
    level on both sides; ``toks`` each level's checksum token; ``vals`` the level's quantity as the
    float from the wire until somebody reads the level, then the Decimal level itself (kept until
    the level changes). ``joined`` caches the top ten tokens as bytes (None once a level changed)
    and ``crc0`` their CRC32, so a frame that touches one side re-joins only that side. The
    :class:`BookSide` API reads the lists; :meth:`set` writes one Decimal level (the reference path;
    the feed writes through :meth:`KrakenBook.apply_raw`)."""

    __slots__ = ("keys", "toks", "vals", "sign", "price_precision", "qty_precision", "joined", "crc0")

    def __init__(self, descending: bool, price_precision: int, qty_precision: int) -> None:
        super().__init__(descending)
        self.sign = -1.0 if descending else 1.0  # float ok: negates a key, exact
        self.keys: list[float] = []
        self.toks: list[str] = []
        self.vals: list[float | Level] = []
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self.joined: bytes | None = None
        self.crc0 = 0

    # --- writing -------------------------------------------------------------------------
    def clear(self) -> None:
        self.keys.clear()
        self.toks.clear()
        self.vals.clear()
        self.joined = None

    def set(self, price: Decimal, quantity: Decimal) -> None:
        if quantity < 0:
            raise ValueError(f"negative quantity {quantity} at {price}")
        try:
            level = _reference_level(price, quantity, self.sign, self.price_precision, self.qty_precision)
        except MalformedFrame as exc:
            raise ValueError(str(exc)) from None
        self.write((level,), None)

    def write(self, levels: Iterable[ParsedLevel], depth: int | None) -> None:
        """Write parsed levels in order (quantity 0 deletes), then keep the best ``depth``."""
        keys, toks, vals = self.keys, self.toks, self.vals
        for key, qty, token in levels:
            i = bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                if qty:
                    toks[i] = token
                    vals[i] = qty
                else:
                    del keys[i], toks[i], vals[i]
            elif qty:
                keys.insert(i, key)
                toks.insert(i, token)
                vals.insert(i, qty)
        if depth is not None and len(keys) > depth:
            del keys[depth:], toks[depth:], vals[depth:]
        self.joined = None

    def truncate(self, depth: int) -> None:
        if len(self.keys) > depth:
            del self.keys[depth:], self.toks[depth:], self.vals[depth:]
            self.joined = None

    def retoken(self, price_precision: int, qty_precision: int) -> None:
        """Render every token again at new precisions (the instrument channel changed them)."""
        self.price_precision, self.qty_precision = price_precision, qty_precision
        self.toks[:] = [
            checksum_token(price, price_precision) + checksum_token(qty, qty_precision)
            for price, qty in (self.level(i) for i in range(len(self.keys)))
        ]
        self.joined = None

    def top_tokens(self) -> bytes:
        """The best ten levels' tokens, joined (cached until a level changes)."""
        joined = self.joined
        if joined is None:
            toks = self.toks
            joined = self.joined = "".join(toks if len(toks) <= CHECKSUM_LEVELS else toks[:CHECKSUM_LEVELS]).encode()
            self.crc0 = zlib.crc32(joined)
        return joined

    # --- reading -------------------------------------------------------------------------
    def level(self, i: int) -> Level:
        """The ``i``-th best level as Decimals (made once, then kept until the level changes)."""
        v = self.vals[i]
        if type(v) is float:
            v = self.vals[i] = (_decimal(self.sign * self.keys[i]), _decimal(v))
        return v  # type: ignore[return-value]  # a Level once made

    def __len__(self) -> int:
        return len(self.keys)

    def best(self) -> Level | None:
        # level(0), written out: the engine and the venue read both best levels on every update.
        vals = self.vals
        if not vals:
            return None
        v = vals[0]
        if type(v) is float:
            price = self.sign * self.keys[0]
            get = _DECIMALS.get  # a price or size is never 0 here, so a cached Decimal is truthy
            v = vals[0] = (get(price) or _decimal(price), get(v) or _decimal(v))
        return v  # type: ignore[return-value]  # a Level once made

    def quantity_at(self, price: Decimal) -> Decimal:
        key = self.sign * float(price)  # float ok: looked up exactly, and compared as a Decimal below
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            level = self.level(i)
            if level[0] == price:
                return level[1]
        return Decimal(0)

    def __iter__(self) -> Iterator[Level]:
        """Levels from best to worst."""
        for i in range(len(self.keys)):
            yield self.level(i)

    def top(self, n: int) -> list[Level]:
        return [self.level(i) for i in range(min(max(n, 0), len(self.keys)))]


class KrakenBook(OrderBook):
    """A Kraken book at a fixed depth whose levels carry their checksum tokens (see the module
    docstring). An :class:`~arbtui.domain.book.OrderBook` for every reader; the feed writes it with
    :meth:`apply_raw`, which returns the checksum."""

    __slots__ = ("tick_bids", "tick_asks", "_pscale", "_qscale", "_price_tokens", "_shallow")

    def __init__(self, depth: int, price_precision: int, qty_precision: int) -> None:
        super().__init__(depth)
        self.tick_bids = TickSide(True, price_precision, qty_precision)
        self.tick_asks = TickSide(False, price_precision, qty_precision)
        self.bids = self.tick_bids
        self.asks = self.tick_asks
        self._pscale = 10.0**price_precision  # float ok: an exact power of ten (precision <= 22)
        self._qscale = 10.0**qty_precision  # float ok: idem
        self._price_tokens: dict[float, str] = {}  # price -> its token at price_precision
        self._shallow = depth <= CHECKSUM_LEVELS  # a side never holds more levels than the checksum reads

    @property
    def precision(self) -> tuple[int, int]:
        return self.tick_asks.price_precision, self.tick_asks.qty_precision

    def retoken(self, price_precision: int, qty_precision: int) -> None:
        """New precisions (Kraken's instrument channel): every token is rendered again."""
        if (price_precision, qty_precision) != self.precision:
            self.tick_bids.retoken(price_precision, qty_precision)
            self.tick_asks.retoken(price_precision, qty_precision)
            self._pscale = 10.0**price_precision  # float ok: as in __init__
            self._qscale = 10.0**qty_precision  # float ok: idem
            self._price_tokens = {}

    def apply_update(self, bids: Iterable[Level], asks: Iterable[Level], ts_ns: int) -> None:
        """Decimal levels (the :class:`OrderBook` API); the feed uses :meth:`apply_raw`."""
        pp, qp = self.precision
        try:
            parsed_bids = [_reference_level(p, q, -1.0, pp, qp) for p, q in bids]
            parsed_asks = [_reference_level(p, q, 1.0, pp, qp) for p, q in asks]
        except MalformedFrame as exc:
            raise ValueError(str(exc)) from None
        self.tick_bids.write(parsed_bids, self.depth)
        self.tick_asks.write(parsed_asks, self.depth)
        self.last_update_ns = ts_ns
        self.sequence += 1

    def _price_token(self, price: float) -> str | None:
        """A float price's token, cached; None when the fast path cannot prove it (a cache miss)."""
        n = _wire_ticks(price, self._pscale) if price > 0.0 else 0
        if not n:
            return None
        tokens = self._price_tokens
        if len(tokens) >= _PRICE_TOKENS_MAX:
            tokens.clear()  # bounded; prices drift over a long session
        token = tokens[price] = str(n)
        return token

    def parse(self, raw: list[Any], sign: float) -> list[ParsedLevel]:
        """A frame's raw ``bids`` (``sign`` -1.0) or ``asks`` (1.0) as (key, quantity, token) triples,
        validated, nothing applied. Raises :class:`MalformedFrame`.

        A float price seen before has its token cached; a float quantity on the grid is rendered
        here (the same steps as :func:`_wire_ticks`, inlined: this is the per-level cost); anything
        else takes the reference path, which gives the same token (module docstring). The same
        steps are inlined once more in :meth:`apply_raw` for the one-level frame."""
        out: list[ParsedLevel] = []
        price_tokens = self._price_tokens
        qscale = self._qscale
        for level in raw:
            try:
                price = level["price"]
                qty = level["qty"]
            except (TypeError, KeyError, IndexError):
                raise MalformedFrame("a level without price and qty") from None
            if type(price) is float and type(qty) is float:
                ptok = price_tokens.get(price)
                if ptok is None:
                    ptok = self._price_token(price)
                if ptok is not None:
                    if qty == 0.0:
                        out.append((sign * price, 0.0, ""))
                        continue
                    y = qty * qscale  # float ok: see _wire_ticks
                    if 0.5 <= y < 4503599627370496.0:  # 2**52
                        m = round(y)
                        if -1e-3 <= y - m <= 1e-3:  # float ok: _TOLERANCE, inlined
                            out.append((sign * price, qty, ptok + str(m)))
                            continue
            pp, qp = self.precision
            out.append(_reference_level(price, qty, sign, pp, qp))
        return out

    def apply_raw(self, bids: Any, asks: Any, ts_ns: int) -> int:
        """Parse, validate and apply a frame's raw ``bids`` and ``asks`` (lists of ``{"price", "qty"}``
        objects as orjson decoded them; None for a side the frame leaves out), cap the depth, and
        return the book's checksum.

        The feed's hot path: every level is validated before any is written, so a malformed frame
        raises :class:`MalformedFrame` with nothing applied; a level's token is rendered once, here.
        Most frames change one level: that case is written out inline (no lists, no calls)."""
        if type(bids) is not list:
            if bids is not None:
                raise MalformedFrame("bids must be a list of levels")
            bids = _NO_LEVELS
        if type(asks) is not list:
            if asks is not None:
                raise MalformedFrame("asks must be a list of levels")
            asks = _NO_LEVELS
        nb = len(bids)
        if nb + len(asks) == 1:
            if nb:
                side, level, sign = self.tick_bids, bids[0], -1.0
            else:
                side, level, sign = self.tick_asks, asks[0], 1.0
            try:
                price = level["price"]
                qty = level["qty"]
            except (TypeError, KeyError, IndexError):
                raise MalformedFrame("a level without price and qty") from None
            token: str | None = None
            if type(price) is float and type(qty) is float:
                ptok = self._price_tokens.get(price)
                if ptok is None:
                    ptok = self._price_token(price)
                if ptok is not None:
                    if qty == 0.0:
                        token = ""
                    else:
                        y = qty * self._qscale  # float ok: see _wire_ticks
                        if 0.5 <= y < 4503599627370496.0:  # 2**52
                            m = round(y)
                            if -1e-3 <= y - m <= 1e-3:  # float ok: _TOLERANCE, inlined
                                token = ptok + str(m)
            if token is None:
                key, qty, token = _reference_level(price, qty, sign, *self.precision)
            else:
                key = sign * price
            keys = side.keys
            i = bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                if qty:
                    side.toks[i] = token
                    side.vals[i] = qty
                else:
                    del keys[i], side.toks[i], side.vals[i]
            elif qty:
                keys.insert(i, key)
                side.toks.insert(i, token)
                side.vals.insert(i, qty)
                depth = self.depth
                if depth is not None and len(keys) > depth:
                    del keys[depth:], side.toks[depth:], side.vals[depth:]
            side.joined = None
        else:
            parsed_bids = self.parse(bids, -1.0) if bids else None
            parsed_asks = self.parse(asks, 1.0) if asks else None
            if parsed_bids is not None:
                self.tick_bids.write(parsed_bids, self.depth)
            if parsed_asks is not None:
                self.tick_asks.write(parsed_asks, self.depth)
        self.last_update_ns = ts_ns
        self.sequence += 1
        # The checksum: each side's joined tokens are cached until it changes (TickSide.top_tokens,
        # inlined for the asks, whose CRC seeds the bids').
        a = self.tick_asks
        if a.joined is None:
            toks = a.toks  # at depth 10 (the usual subscription) never longer than the checksum's ten
            a.joined = "".join(toks if self._shallow else toks[:CHECKSUM_LEVELS]).encode()
            a.crc0 = zlib.crc32(a.joined)
        b = self.tick_bids
        return zlib.crc32(b.joined or b.top_tokens(), a.crc0)

    def checksum(self) -> int:
        """Kraken's CRC32 of this book: the top ten asks' tokens, then the top ten bids'."""
        self.tick_asks.top_tokens()
        return zlib.crc32(self.tick_bids.top_tokens(), self.tick_asks.crc0)

    def is_crossed(self) -> bool:
        b, a = self.tick_bids.keys, self.tick_asks.keys
        return bool(b) and bool(a) and -b[0] >= a[0]


@dataclass
class KrakenBooks:
    """The books of one Kraken book subscription, verified frame by frame."""

    depth: int
    precision: dict[str, tuple[int, int]]  # symbol -> (price_precision, qty_precision)
    books: dict[str, KrakenBook] = field(default_factory=dict)
    frames: int = 0
    malformed: int = 0
    checksum_failures: int = 0
    needs_resync: set[str] = field(default_factory=set)

    def on_raw(self, raw: str | bytes, ts_ns: int) -> str | None:
        """Apply one raw frame; returns the symbol whose book changed (and verified), else None."""
        self.frames += 1
        try:
            msg = orjson.loads(raw)
            if type(msg) is not dict or msg.get("channel") != "book":
                if type(msg) is not dict or ("method" not in msg and not isinstance(msg.get("channel"), str)):
                    self.malformed += 1
                return None
            head = _book_head(msg)
        except (orjson.JSONDecodeError, MalformedFrame):
            self.malformed += 1
            return None
        symbol, snapshot, d, checksum = head
        precision = self.precision.get(symbol)
        if precision is None:
            self.malformed += 1
            return None
        if symbol in self.needs_resync and not snapshot:
            return None  # waiting for the fresh snapshot; updates on a wrong book are useless
        book = KrakenBook(self.depth, *precision) if snapshot else self.books.get(symbol)
        if book is None:
            self.malformed += 1
            return None
        book.retoken(*precision)
        try:
            crc = book.apply_raw(d.get("bids", []), d.get("asks", []), ts_ns)
        except MalformedFrame:
            self.malformed += 1
            return None
        self.books[symbol] = book
        if checksum is not None and crc != checksum:
            self.checksum_failures += 1
            self.needs_resync.add(symbol)
            return None
        self.needs_resync.discard(symbol)
        return symbol


def _book_head(msg: dict[str, Any]) -> tuple[str, bool, dict[str, Any], int | None]:
    """(symbol, snapshot, the data element, checksum) of a ``book`` message. Raises :class:`MalformedFrame`."""
    kind = msg.get("type")
    data = msg.get("data")
    if type(data) is not list or len(data) != 1 or type(data[0]) is not dict or kind not in ("snapshot", "update"):
        raise MalformedFrame("book frame without a type or a single data element")
    d: dict[str, Any] = data[0]
    symbol = d.get("symbol")
    if type(symbol) is not str:
        raise MalformedFrame("book frame without a symbol")
    checksum = d.get("checksum")
    if checksum is not None and type(checksum) is not int:
        raise MalformedFrame("checksum is not an integer")
    return symbol, kind == "snapshot", d, checksum
