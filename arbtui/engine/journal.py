"""The execution journal: SQLite (standard library), WAL mode, one writer thread.

Every pair's intent (the pair row and both legs with their client order ids) is committed before
either request leaves; every state transition, leg update, fill and operator action is written
after. Writes run on a dedicated thread, so the event loop never waits on disk, but each write is
awaited by the code that needs it durable (STYLE.md rule 8: no fire-and-forget writes).

Durability: WAL with ``synchronous=NORMAL`` survives the process being killed at any point (the
crash test kills it with SIGKILL); a power loss may lose the last transactions.

On start-up, pairs that were not in a final state are handed back (:meth:`Journal.unfinished_pairs`)
so the executor can reconcile them against the venues by client order id.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sqlite3
import string
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import orjson

from arbtui.domain.execution import LegView, PairView, Quote

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, started_ns INTEGER NOT NULL, version TEXT, mode TEXT);
CREATE TABLE IF NOT EXISTS pairs(
    pair_id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, run_id INTEGER NOT NULL, opportunity_id TEXT,
    spread_key TEXT NOT NULL, grp TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
    expected_pnl TEXT NOT NULL, realized_pnl TEXT, exposure TEXT, created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL, reason TEXT, resolved INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS legs(
    client_order_id TEXT PRIMARY KEY, pair_id TEXT NOT NULL REFERENCES pairs(pair_id), idx INTEGER NOT NULL,
    role TEXT NOT NULL, target INTEGER NOT NULL, venue TEXT NOT NULL, market TEXT NOT NULL, side TEXT NOT NULL,
    quantity TEXT NOT NULL, limit_price TEXT NOT NULL, tif TEXT NOT NULL, state TEXT NOT NULL,
    filled TEXT NOT NULL, average_price TEXT, fee TEXT NOT NULL, sent_ns INTEGER, answered_ns INTEGER,
    reason TEXT);
CREATE TABLE IF NOT EXISTS fills(
    client_order_id TEXT NOT NULL, seq INTEGER NOT NULL, quantity TEXT NOT NULL, price TEXT NOT NULL,
    fee TEXT NOT NULL, liquidity TEXT NOT NULL, ts_ns INTEGER NOT NULL, PRIMARY KEY(client_order_id, seq));
CREATE TABLE IF NOT EXISTS transitions(
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, entity TEXT NOT NULL, entity_id TEXT NOT NULL,
    from_state TEXT, trigger TEXT NOT NULL, to_state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actions(
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
    detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alarms(
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, kind TEXT NOT NULL, venue TEXT NOT NULL,
    asset TEXT NOT NULL, raised INTEGER NOT NULL, expected TEXT, actual TEXT, difference TEXT, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pairs_state ON pairs(state);
CREATE TABLE IF NOT EXISTS quotes(
    run_id INTEGER NOT NULL, quote_id TEXT NOT NULL, purpose TEXT NOT NULL, opportunity_id TEXT,
    spread_key TEXT NOT NULL, created_ns INTEGER NOT NULL, expires_ns INTEGER NOT NULL, legs TEXT NOT NULL,
    fees TEXT NOT NULL, pnl_before_buffer TEXT NOT NULL, expected_pnl TEXT NOT NULL, net_bps TEXT NOT NULL,
    worst_case TEXT NOT NULL, refusal TEXT, refusal_detail TEXT NOT NULL, pair_id TEXT,
    PRIMARY KEY(run_id, quote_id));
"""

TERMINAL_STATES = ("completed", "unwound", "broken", "aborted")

# Which SQLite files are arbtui journals. ``PRAGMA application_id`` (the header's 4 bytes at offset 68)
# says which program a database belongs to; ``PRAGMA user_version`` is the journal's schema version.
# arbtui writes its schema into a file only when it is new (empty), already stamped as arbtui's, or
# an arbtui journal from before the stamp (application_id 0 with arbtui's tables and a meta tag);
# any other database, which belongs to some other program, is refused and left untouched.
APPLICATION_ID = 0x41524254  # "ARBT"
SCHEMA_VERSION = 1  # bump (with a MIGRATIONS entry when SCHEMA alone cannot upgrade) on a schema change
MIGRATIONS: dict[int, str] = {}  # version -> SQL run after SCHEMA to bring a journal from version - 1 to it
# The tables of the first journals (before the stamp): a database must have all of them, and no
# table SCHEMA does not make, to be adopted as an arbtui journal.
_LEGACY_TABLES = frozenset({"meta", "runs", "pairs", "legs", "fills", "transitions", "actions"})


class JournalError(Exception):
    """A path that cannot hold arbtui's journal; ``str()`` names the path and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def prepare_journal(path: Path) -> None:
    """Check that ``path`` can hold arbtui's journal, creating or stamping it as :meth:`Journal.open`
    would; raise :class:`JournalError` naming the path otherwise. The command line calls this before
    anything starts, so a bad journal path is a clear error rather than a failed engine."""
    connect_journal(path).close()


def connect_journal(path: Path) -> sqlite3.Connection:
    """A connection to the arbtui journal at ``path`` (validated, stamped and on the current schema),
    in autocommit mode; raises :class:`JournalError` for anything that is not arbtui's journal, and
    then writes nothing into the file."""
    _check_location(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JournalError(path, f"cannot create its folder: {exc.strerror}") from None
    existed = path.exists()
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise JournalError(path, f"cannot {'open' if existed else 'create'} the file ({exc})") from None
    try:
        version = _inspect(conn, path)
        steps = "".join(MIGRATIONS.get(v, "") for v in range(version + 1, SCHEMA_VERSION + 1))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        # One transaction: a crash leaves either the old file or a complete, stamped journal.
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{SCHEMA}\n{steps}\nPRAGMA application_id={APPLICATION_ID};\n"
            f"PRAGMA user_version={SCHEMA_VERSION};\nCOMMIT;"
        )
    except sqlite3.Error as exc:
        conn.close()
        raise JournalError(path, _sqlite_reason(exc)) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _check_location(path: Path) -> None:
    if path.is_dir():
        raise JournalError(path, "is a folder; expected the journal's file, e.g. FOLDER/journal.sqlite")
    if path.exists() and not path.is_file():
        raise JournalError(path, "is not a regular file (a device such as /dev/null cannot hold a journal)")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise JournalError(path, f"{folder} is a file, not a folder")
    # SQLite's WAL mode keeps -wal and -shm files beside the journal: the folder must be writable too.
    if not os.access(folder, os.W_OK | os.X_OK):
        raise JournalError(path, f"the folder {folder} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise JournalError(path, "the file is read-only")


def _inspect(conn: sqlite3.Connection, path: Path) -> int:
    """The schema version of the arbtui journal open on ``conn`` (0: new or from before the stamp);
    raises :class:`JournalError` for a damaged file or another program's database. Reads only."""
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        objects = [(str(r[0]), str(r[1])) for r in conn.execute("SELECT type, name FROM sqlite_master")]
        check = conn.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.Error as exc:
        raise JournalError(path, _sqlite_reason(exc)) from None
    if check is None or check[0] != "ok":
        raise JournalError(path, "the SQLite file is damaged (truncated or corrupt); move it aside to start a new one")
    if app_id == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise JournalError(
                path, f"written by a newer arbtui (journal schema {version}; this one reads up to {SCHEMA_VERSION})"
            )
        return version
    foreign = "not an arbtui journal but some other program's SQLite database"
    if app_id != 0:
        raise JournalError(path, f"{foreign} (application_id {app_id:#010x}); arbtui leaves it untouched")
    # New only if it holds nothing at all: a database with only a view, index or trigger is someone's.
    if not objects and version == 0:
        return 0  # new
    tables = {name for kind, name in objects if kind == "table"}
    known = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA)) | {"sqlite_sequence"}
    if _LEGACY_TABLES <= tables <= known and version == 0:
        try:
            tag = conn.execute("SELECT value FROM meta WHERE key='tag'").fetchone()
        except sqlite3.Error:
            tag = None
        if tag is not None:
            return 0  # an arbtui journal from before the stamp: adopted
    names = sorted(tables) or sorted(f"{kind} {name}" for kind, name in objects)
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    what = f"tables: {shown}" if tables else f"no tables; {shown}" if objects else f"empty, user_version {version}"
    raise JournalError(path, f"{foreign} ({what}); arbtui leaves it untouched")


def _sqlite_reason(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_NOTADB":
        return "not an SQLite database (another kind of file, or corrupt); arbtui leaves it untouched"
    if name == "SQLITE_CORRUPT":
        return "the SQLite file is damaged (truncated or corrupt); move it aside to start a new one"
    if name.startswith("SQLITE_READONLY"):
        return "the file or its folder is read-only"
    if name.startswith("SQLITE_CANTOPEN"):
        return "cannot open it (a folder that cannot be written, or not a file?)"
    return f"cannot use it as a journal: {exc}"


def default_journal_path() -> Path:
    """``$XDG_DATA_HOME/arbtui/journal.sqlite`` (``~/.local/share/arbtui/journal.sqlite``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "arbtui" / "journal.sqlite"


@dataclass(frozen=True, slots=True)
class StoredPair:
    row: dict[str, Any]
    legs: tuple[dict[str, Any], ...]


class Journal:
    """An append-mostly record of pairs, legs, fills, transitions and operator actions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arbtui-journal")
        self._conn: sqlite3.Connection | None = None
        self.run_id = 0
        self.tag = ""  # three characters that make this journal's client order ids unique
        self._pending = 0
        self._idle: asyncio.Event | None = None

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._conn
            assert conn is not None, "journal is not open"
            # One explicit transaction per call (the connection is in autocommit mode, where
            # ``with conn:`` would open none): a crash mid-call leaves nothing of it behind.
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        if self._idle is None:
            self._idle = asyncio.Event()
        self._pending += 1
        self._idle.clear()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, run)
        finally:
            self._pending -= 1
            if self._pending == 0:
                self._idle.set()

    async def wait_idle(self) -> bool:
        """Wait for every write in flight; True if there was one (a ManualClock settler)."""
        if self._pending == 0 or self._idle is None:
            return False
        await self._idle.wait()
        return True

    async def open(self, started_ns: int, version: str, mode: str) -> None:
        def connect() -> None:
            self._conn = connect_journal(self.path)  # refuses (JournalError) what is not arbtui's journal

        await asyncio.get_running_loop().run_in_executor(self._pool, connect)

        def start(conn: sqlite3.Connection) -> tuple[int, str]:
            row = conn.execute("SELECT value FROM meta WHERE key='tag'").fetchone()
            if row is None:
                alphabet = string.ascii_lowercase + string.digits
                tag = "".join(secrets.choice(alphabet) for _ in range(3))
                conn.execute("INSERT INTO meta(key, value) VALUES('tag', ?)", (tag,))
            else:
                tag = row[0]
            cur = conn.execute("INSERT INTO runs(started_ns, version, mode) VALUES(?,?,?)", (started_ns, version, mode))
            assert cur.lastrowid is not None
            return cur.lastrowid, tag

        self.run_id, self.tag = await self._call(start)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=True)

    async def next_pair_seq(self) -> int:
        def q(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM pairs").fetchone()
            return int(row[0]) + 1

        return await self._call(q)

    # --- writes --------------------------------------------------------------------------------
    async def record_quote(self, quote: Quote) -> None:
        """A quote as the operator was shown it (the confirm modal, a simulation)."""
        await self._call(lambda conn: _insert_quote(conn, self.run_id, quote, None))

    async def record_intent(self, pair: PairView, seq: int, kind: str, ts_ns: int, quote: Quote | None = None) -> None:
        """The pair and its entry legs (as they are sent) beside the quote they were sent for, before
        anything is sent. Committed when this returns."""

        def w(conn: sqlite3.Connection) -> None:
            if quote is not None:
                _insert_quote(conn, self.run_id, quote, pair.pair_id)
            conn.execute(
                "INSERT INTO pairs(pair_id, seq, run_id, opportunity_id, spread_key, grp, kind, state, expected_pnl,"
                " created_ns, updated_ns) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                (
                    pair.pair_id,
                    seq,
                    self.run_id,
                    pair.opportunity_id,
                    pair.key,
                    pair.group,
                    kind,
                    pair.state.value,
                    str(pair.expected_pnl),
                    pair.created_ns,
                    ts_ns,
                ),
            )
            for idx, leg in enumerate(pair.legs):
                _upsert_leg(conn, leg, idx, idx)
            conn.execute(
                "INSERT INTO transitions(ts_ns, entity, entity_id, from_state, trigger, to_state) VALUES(?,?,?,?,?,?)",
                (ts_ns, "pair", pair.pair_id, None, "intent", pair.state.value),
            )

        await self._call(w)

    async def record_pair(self, pair: PairView, ts_ns: int, trigger: str | None, previous: str | None) -> None:
        def w(conn: sqlite3.Connection) -> None:
            exposure = ";".join(f"{e.venue}:{e.market}:{e.side.value}:{e.quantity}" for e in pair.exposure)
            conn.execute(
                "UPDATE pairs SET state=?, realized_pnl=?, exposure=?, updated_ns=?, reason=?, resolved=?"
                " WHERE pair_id=?",
                (
                    pair.state.value,
                    None if pair.realized_pnl is None else str(pair.realized_pnl),
                    exposure or None,
                    ts_ns,
                    pair.reason,
                    int(pair.resolved),
                    pair.pair_id,
                ),
            )
            if trigger is not None:
                conn.execute(
                    "INSERT INTO transitions(ts_ns, entity, entity_id, from_state, trigger, to_state)"
                    " VALUES(?,?,?,?,?,?)",
                    (ts_ns, "pair", pair.pair_id, previous, trigger, pair.state.value),
                )

        await self._call(w)

    async def record_leg(
        self, leg: LegView, idx: int, target: int, ts_ns: int, trigger: str | None, previous: str | None
    ) -> None:
        def w(conn: sqlite3.Connection) -> None:
            _upsert_leg(conn, leg, idx, target)
            if trigger is not None:
                conn.execute(
                    "INSERT INTO transitions(ts_ns, entity, entity_id, from_state, trigger, to_state)"
                    " VALUES(?,?,?,?,?,?)",
                    (ts_ns, "leg", leg.client_order_id, previous, trigger, leg.state.value),
                )

        await self._call(w)

    async def record_fills(self, client_order_id: str, fills: list[tuple[int, str, str, str, str, int]]) -> None:
        """Fills as (seq, quantity, price, fee, liquidity, ts_ns); a fill already recorded is kept as is."""

        def w(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO fills(client_order_id, seq, quantity, price, fee, liquidity, ts_ns)"
                " VALUES(?,?,?,?,?,?,?)",
                [(client_order_id, *f) for f in fills],
            )

        await self._call(w)

    async def record_action(self, ts_ns: int, action: str, target: str, detail: str = "") -> None:
        def w(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO actions(ts_ns, action, target, detail) VALUES(?,?,?,?)", (ts_ns, action, target, detail)
            )

        await self._call(w)

    async def record_alarm(
        self,
        ts_ns: int,
        kind: str,
        venue: str,
        asset: str,
        *,
        raised: bool,
        expected: Decimal | None = None,
        actual: Decimal | None = None,
        difference: Decimal | None = None,
        detail: str = "",
    ) -> None:
        """An alarm raised (``raised``) or cleared, e.g. a position drift (``kind="position_drift"``)."""

        def text(d: Decimal | None) -> str | None:
            return None if d is None else str(d)

        def w(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO alarms(ts_ns, kind, venue, asset, raised, expected, actual, difference, detail)"
                " VALUES(?,?,?,?,?,?,?,?,?)",
                (ts_ns, kind, venue, asset, int(raised), text(expected), text(actual), text(difference), detail),
            )

        await self._call(w)

    # --- reads ---------------------------------------------------------------------------------
    async def unfinished_pairs(self) -> list[StoredPair]:
        """Pairs an earlier run left not final, and final pairs with a leg still watched (NOT_FOUND)."""

        def q(conn: sqlite3.Connection) -> list[StoredPair]:
            conn.row_factory = sqlite3.Row
            try:
                # Not final, or final with a leg still watched for a late arrival (state not_found).
                rows = conn.execute(
                    f"SELECT * FROM pairs WHERE state NOT IN ({','.join('?' * len(TERMINAL_STATES))})"
                    " OR pair_id IN (SELECT pair_id FROM legs WHERE state='not_found') ORDER BY seq",
                    TERMINAL_STATES,
                ).fetchall()
                out = []
                for r in rows:
                    legs = conn.execute("SELECT * FROM legs WHERE pair_id=? ORDER BY idx", (r["pair_id"],)).fetchall()
                    out.append(StoredPair(dict(r), tuple(dict(x) for x in legs)))
                return out
            finally:
                conn.row_factory = None

        return await self._call(q)

    async def realized_since(self, since_ns: int) -> Decimal:
        """Realized PnL of pairs created since ``since_ns`` that reached a final state (earlier runs)."""

        def q(conn: sqlite3.Connection) -> Decimal:
            rows = conn.execute(
                "SELECT realized_pnl FROM pairs WHERE created_ns >= ? AND realized_pnl IS NOT NULL", (since_ns,)
            ).fetchall()
            return sum((Decimal(r[0]) for r in rows), Decimal(0))

        return await self._call(q)

    async def blocked_markets(self) -> list[tuple[str, str]]:
        """(pair id, group) of BROKEN pairs the operator has not resolved."""

        def q(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return [
                (r[0], r[1])
                for r in conn.execute("SELECT pair_id, grp FROM pairs WHERE state='broken' AND resolved=0 ORDER BY seq")
            ]

        return await self._call(q)

    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read-only look-ups for tests, reports and the UI."""

        def q(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]

        return await self._call(q)


def _upsert_leg(conn: sqlite3.Connection, leg: LegView, idx: int, target: int) -> None:
    conn.execute(
        "INSERT INTO legs(client_order_id, pair_id, idx, role, target, venue, market, side, quantity, limit_price, tif,"
        " state, filled, average_price, fee, sent_ns, answered_ns, reason) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT(client_order_id) DO UPDATE SET state=excluded.state, filled=excluded.filled,"
        " average_price=excluded.average_price, fee=excluded.fee, sent_ns=excluded.sent_ns,"
        " answered_ns=excluded.answered_ns, reason=excluded.reason",
        (
            leg.client_order_id,
            leg.pair_id,
            idx,
            leg.role.value,
            target,
            leg.venue,
            leg.market,
            leg.side.value,
            str(leg.quantity),
            str(leg.limit_price),
            leg.time_in_force.value,
            leg.state.value,
            str(leg.filled),
            None if leg.average_price is None else str(leg.average_price),
            str(leg.fee),
            leg.sent_ns,
            leg.answered_ns,
            leg.reason,
        ),
    )


def _insert_quote(conn: sqlite3.Connection, run_id: int, quote: Quote, pair_id: str | None) -> None:
    """The quote's row (kept as first written), and the pair it was sent as once it is."""
    legs = orjson.dumps(
        [
            {
                "venue": leg.venue,
                "market": leg.market,
                "side": leg.side.value,
                "quantity": str(leg.quantity),
                "limit_price": str(leg.limit_price),
                "vwap": None if leg.vwap is None else str(leg.vwap),
                "fee": str(leg.fee),
                "book_fills": str(leg.book_fills),
            }
            for leg in quote.legs
        ]
    ).decode()
    conn.execute(
        "INSERT OR IGNORE INTO quotes(run_id, quote_id, purpose, opportunity_id, spread_key, created_ns, expires_ns,"
        " legs, fees, pnl_before_buffer, expected_pnl, net_bps, worst_case, refusal, refusal_detail)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            run_id,
            quote.quote_id,
            quote.purpose,
            quote.opportunity_id,
            quote.spread.key,
            quote.created_ns,
            quote.expires_ns,
            legs,
            str(quote.fees),
            str(quote.pnl_before_buffer),
            str(quote.expected_pnl),
            str(quote.net_bps),
            str(quote.worst_case),
            quote.refusal,
            quote.refusal_detail,
        ),
    )
    if pair_id is not None:
        conn.execute("UPDATE quotes SET pair_id=? WHERE run_id=? AND quote_id=?", (pair_id, run_id, quote.quote_id))
