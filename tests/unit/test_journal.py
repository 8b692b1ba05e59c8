"""The journal's writes are transactions: a write that fails half-way leaves nothing behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from arbtui.engine.journal import Journal


async def test_a_failed_write_leaves_no_partial_rows(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    await journal.open(0, "test", "sim")

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO actions(ts_ns, action, target, detail) VALUES(1, 'confirm', 'O-1', '')")
        raise RuntimeError("crash between two statements")

    with pytest.raises(RuntimeError):
        await journal._call(half_then_fail)
    await journal.record_action(2, "abort", "P-1")
    rows = await journal.query("SELECT action, target FROM actions ORDER BY id")
    assert rows == [("abort", "P-1")]
    await journal.close()


async def test_the_tag_survives_reopening_and_runs_are_numbered(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    first = Journal(path)
    await first.open(0, "test", "sim")
    tag, run = first.tag, first.run_id
    await first.close()
    second = Journal(path)
    await second.open(1, "test", "sim")
    assert second.tag == tag and len(tag) == 3 and tag.isalnum()
    assert second.run_id == run + 1
    await second.close()
