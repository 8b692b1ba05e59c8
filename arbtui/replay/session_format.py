"""The session file: JSON Lines (gzip when the name ends in ``.gz``), documented in
``docs/session-format.md``. Line 1 is the header; every later line is one event with ``t`` (integer
nanoseconds on the engine clock) and ``kind``.

Writing never stalls the engine: events are queued and a writer thread serialises, compresses and
flushes them (every ``flush_interval_s`` or ``flush_bytes``), so a crash loses at most the last
buffer. Reading names the line of any bad input.
"""

from __future__ import annotations

import gzip
import io
import queue
import threading
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

FORMAT = "arbtui-session"
VERSION = 1
KINDS = ("frame", "connect", "order", "reply", "action")


def default_session_path(now_ns: int) -> Path:
    """``$XDG_DATA_HOME/arbtui/sessions/session-YYYYmmdd-HHMMSS.jsonl.gz`` at the engine clock's time."""
    import datetime as dt
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    stamp = dt.datetime.fromtimestamp(now_ns // 1_000_000_000, tz=dt.UTC).strftime("%Y%m%d-%H%M%S")
    return Path(base) / "arbtui" / "sessions" / f"session-{stamp}.jsonl.gz"


class SessionError(Exception):
    """A session file that cannot be read: the message names the file and the line."""

    def __init__(self, path: Path | str, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class SessionHeader:
    version: int
    created: str
    arbtui: str
    config: Mapping[str, Any]
    start_ns: int
    raw: Mapping[str, Any]


def _open_text_write(path: Path) -> gzip.GzipFile | IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.GzipFile(filename=str(path), mode="wb", compresslevel=6)
    return open(path, "wb")  # noqa: SIM115 - closed by the writer thread


class SessionWriter:
    """Appends events to a session file from a background thread."""

    def __init__(self, path: Path, header: Mapping[str, Any], *, flush_interval_s: float = 0.2) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[dict[str, Any] | bytes | None] = queue.SimpleQueue()
        self._flush_interval_s = flush_interval_s
        self.events = 0
        self.bytes = 0
        self.error: BaseException | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _open_text_write(path)
        line = orjson.dumps(dict(header)) + b"\n"
        self._file.write(line)
        self._flush()
        self._thread = threading.Thread(target=self._run, name=f"session-writer:{path.name}", daemon=True)
        self._thread.start()

    def write(self, event: dict[str, Any]) -> None:
        """Queue one event (serialised on the writer thread). Never blocks."""
        self.events += 1
        self._queue.put(event)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _flush(self) -> None:
        if isinstance(self._file, gzip.GzipFile):
            self._file.flush(zlib.Z_SYNC_FLUSH)  # a reader (or a crash) sees everything up to here
        else:
            self._file.flush()

    def _run(self) -> None:
        buf = io.BytesIO()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._flush_interval_s)
                except queue.Empty:
                    item = b""
                if item is None:
                    break
                if isinstance(item, dict):
                    buf.write(orjson.dumps(item))
                    buf.write(b"\n")
                    if buf.tell() < 1 << 16 and not self._queue.empty():
                        continue  # more is waiting: write it in one go
                if buf.tell():
                    data = buf.getvalue()
                    self._file.write(data)
                    self.bytes += len(data)
                    buf = io.BytesIO()
                    self._flush()
        except BaseException as exc:  # noqa: BLE001 - surfaced to the recorder, which shows it
            self.error = exc
        finally:
            if buf.tell():
                self._file.write(buf.getvalue())
            self._file.close()


class _Source:
    """The file's lines, and how far into the file (on disk) reading has got."""

    def __init__(self, path: Path) -> None:
        self.size = max(1, path.stat().st_size)
        self._raw = open(path, "rb")  # noqa: SIM115 - closed when the lines run out
        self._gz = path.name.endswith(".gz")

    def fraction(self) -> float:
        try:
            return min(1.0, self._raw.tell() / self.size)  # float ok: a progress bar
        except (OSError, ValueError):
            return 1.0

    def lines(self) -> Iterator[bytes]:
        """The file's lines. A plain file is its own line iterator (no generator in between: the
        replay reads every line through here); :meth:`close` closes it."""
        if not self._gz:
            return iter(self._raw)
        return self._gz_lines()

    def _gz_lines(self) -> Iterator[bytes]:
        try:
            with gzip.GzipFile(fileobj=self._raw, mode="rb") as fh:
                try:
                    yield from fh
                except (EOFError, OSError, zlib.error):
                    yield b"\x00truncated"  # the reader turns it into an error naming the line
        finally:
            self._raw.close()

    def close(self) -> None:
        self._raw.close()


class SessionReader:
    """Reads a session file: ``header`` at once, then iterate for (line number, event).

    A bad line raises :class:`SessionError` naming it; with ``skip_bad`` it is skipped and counted in
    ``skipped``. A line that goes back in time is bad too.
    """

    def __init__(self, path: Path, *, skip_bad: bool = False) -> None:
        self.path = path
        self.skip_bad = skip_bad
        self.skipped = 0
        self.lines_read = 0
        if not path.exists():
            raise SessionError(path, None, "no such file")
        self._source = _Source(path)
        self._lines = self._source.lines()
        try:
            first = next(self._lines, None)
        except OSError as exc:
            raise SessionError(path, 1, f"cannot read: {exc}") from None
        if first is None or first == b"\x00truncated":
            raise SessionError(path, 1, "empty file: expected an arbtui-session header")
        self.header = _header(path, first)
        self.lines_read = 1

    def fraction(self) -> float:
        """How much of the file has been read (0..1)."""
        return self._source.fraction()

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, event) for every event line, checked (see the class docstring).

        The replay's per-line cost, so the common case is checked inline: a JSON object with an
        integer ``t`` no earlier than the last one and a ``frame`` with its three strings. Anything
        else (another kind, or any doubt) goes through :func:`_event`, which accepts it or names
        what is wrong."""
        path = self.path
        last_t: int | None = None
        n = 1
        loads = orjson.loads
        try:
            for line in self._lines:
                n += 1
                self.lines_read = n
                try:
                    ev = loads(line)
                    t = ev["t"]
                    if (
                        ev["kind"] == "frame"
                        and type(t) is int
                        and (last_t is None or t >= last_t)
                        and type(ev["raw"]) is str
                        and type(ev["venue"]) is str
                        and type(ev["stream"]) is str
                    ):
                        last_t = t
                        yield n, ev
                        continue
                except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
                    pass
                # Not a well-formed frame: the careful path.
                if line == b"\x00truncated":
                    raise SessionError(path, n, "the compressed stream ends early (truncated file)")
                try:
                    ev = _event(line)
                    if last_t is not None and ev["t"] < last_t:
                        raise ValueError(f"time goes backwards ({ev['t']} after {last_t})")
                except ValueError as exc:
                    msg = str(exc) if line.endswith(b"\n") else f"truncated last line ({exc})"
                    if self.skip_bad:
                        self.skipped += 1
                        continue
                    raise SessionError(path, n, msg) from None
                last_t = ev["t"]
                yield n, ev
        except OSError as exc:
            raise SessionError(path, n, f"cannot read: {exc}") from None
        finally:
            self._source.close()


def _header(path: Path, line: bytes) -> SessionHeader:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise SessionError(path, 1, "not an arbtui session (the first line is not a JSON header)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SessionError(path, 1, f'not an arbtui session (expected "format": "{FORMAT}")')
    version = doc.get("version")
    if version != VERSION:
        raise SessionError(
            path, 1, f"session format version {version!r} is not supported (this arbtui reads version {VERSION})"
        )
    config = doc.get("config")
    start = doc.get("start_ns")
    if not isinstance(config, dict) or not isinstance(start, int):
        raise SessionError(path, 1, "the header lacks its config object or start_ns")
    return SessionHeader(version, str(doc.get("created", "")), str(doc.get("arbtui", "")), config, start, doc)


def _event(line: bytes) -> dict[str, Any]:
    try:
        ev = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(ev, dict):
        raise ValueError("an event must be a JSON object")
    t = ev.get("t")
    if isinstance(t, bool) or not isinstance(t, int):
        raise ValueError('an event needs an integer "t" (nanoseconds)')
    kind = ev.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r} (expected one of {', '.join(KINDS)})")
    if kind == "frame" and not (
        isinstance(ev.get("venue"), str) and isinstance(ev.get("stream"), str) and isinstance(ev.get("raw"), str)
    ):
        raise ValueError('a frame needs "venue", "stream" and "raw" strings')
    return ev
