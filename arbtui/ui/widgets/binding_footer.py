"""The footer: Textual's, except that a change in which bindings apply does not rebuild it.

Textual's :class:`~textual.widgets.Footer` recomposes (removes and mounts a dozen keys) on every
bindings refresh. The console refreshes bindings whenever what can be done changes (a spread starts
or stops paying, a pair ends), which under a busy feed happens several times a second. When the
keys shown are the same and only their availability changed, this footer dims or undims the keys
in place, which draws exactly what a recompose would.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

# (key, action, description, tooltip) of every key shown, in order: what a recompose would change.
Layout = tuple[tuple[str, str, str, str], ...]


class BindingFooter(Footer):
    """A :class:`~textual.widgets.Footer` that updates availability in place."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._composed: Layout | None = None
        self.recomposes = 0  # tests check that availability changes do not recompose

    def _active(self, screen: Screen[object]) -> tuple[Layout, dict[tuple[str, str], bool]]:
        active = screen.active_bindings
        palette = self.app.COMMAND_PALETTE_BINDING if self.show_command_palette else None
        layout = tuple(
            (b.key, b.action, b.description, tooltip)
            for key, (_, b, _, tooltip) in active.items()
            if b.show or key == palette
        )
        return layout, {(b.key, b.action): enabled for (_, b, enabled, _) in active.values()}

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self.recomposes += 1
            self._composed = self._active(self.screen)[0]
        yield from super().compose()

    def bindings_changed(self, screen: Screen[object]) -> None:
        if self._composed is not None and self.is_attached and screen is self.screen and screen.app.app_focus:
            layout, enabled = self._active(screen)
            if layout == self._composed:
                for key in self.query(FooterKey):
                    available = enabled.get((key.key, key.action))
                    if available is not None and key._disabled == available:
                        key._disabled = not available  # what FooterKey(disabled=...) sets
                        key.set_class(not available, "-disabled")
                return
        super().bindings_changed(screen)
