"""Replay controls and the record key, pressed as an operator would."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbtui.replay.session_format import SessionReader
from arbtui.ui.scenarios import make_app, make_replay_app, warm_up
from arbtui.ui.widgets.status_header import StatusHeader

SESSION = Path(__file__).parent.parent / "data" / "sim-session-15s.jsonl.gz"


async def test_replay_pause_step_and_speed_keys(tmp_path: Path) -> None:
    app, _ = make_replay_app(SESSION, tmp_path)
    player = app.replay
    assert player is not None
    player.pause_at(None)
    player.set_speed(1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.engine_started.wait()
        await pilot.press("space")
        assert not player.paused.is_set()
        before = -1
        for _ in range(50):  # an event already being paced may still play; then nothing does
            if player.stats.events == before:
                break
            before = player.stats.events
            await pilot.pause(0.3)
        assert player.stats.events == before  # paused: nothing plays
        await pilot.press("full_stop")
        await pilot.pause(0.2)
        assert player.stats.events == before + 1  # one step, one event
        await pilot.press("plus")
        assert player.speed == 2.0
        await pilot.press("minus", "minus")
        assert player.speed == 0.5
        await pilot.press("space")
        assert player.paused.is_set()
        player.set_speed(None)  # let it finish
        await player.finished.wait()
        await app.flush()
        assert player.progress == 1.0
        await app.engine.stop("test over")


async def test_record_key_starts_and_stops_a_session_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    app, clock = make_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await warm_up(app, clock, 1)
        await pilot.press("r")
        recorder = app.engine.recorder
        assert recorder is not None and recorder.active
        await app.flush()
        assert "REC" in str(app.main_screen.query_one(StatusHeader).render())
        await warm_up(app, clock, 1)
        await pilot.press("r")
        assert not recorder.active
        path = recorder.path
        assert path is not None and path.parent == tmp_path / "arbtui" / "sessions"
        reader = SessionReader(path)
        kinds = {ev["kind"] for _, ev in reader}
        assert reader.header.config["seed"] == 7 and {"connect", "frame"} <= kinds
        await app.engine.stop("test over")
