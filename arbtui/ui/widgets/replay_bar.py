"""The replay line under the header: play state, speed, a progress bar, session time and the keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from arbtui.ui.formatting import clock_text

if TYPE_CHECKING:
    from arbtui.replay.player import ReplayPlayer

BAR_WIDTH = 24


class ReplayBar(Static):
    _last = ""

    def show(self, player: ReplayPlayer, now_ns: int) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" REPLAY ", style="bold black on magenta")
        if player.finished.is_set():
            state = "■ end"
        elif player.paused.is_set():
            state = "▶ playing"
        else:
            state = "❚❚ paused"
        text.append(f" {state} ", style="bold")
        speed = "max" if player.speed is None else f"{player.speed:g}x"
        text.append(f"{speed:>5} ", style="bold cyan")
        done = int(player.progress * BAR_WIDTH)
        text.append("█" * done, style="magenta")
        text.append("░" * (BAR_WIDTH - done), style="dim")
        text.append(f" {player.progress * 100:3.0f}%  {clock_text(now_ns)}")
        text.append(f"  {player.stats.frames} frames", style="dim")
        text.append("  space ▶/❚❚  + - speed  . step", style="dim")
        if text.plain != self._last:
            self._last = text.plain
            self.update(text, layout=False)  # one line, always: no re-layout of the screen
