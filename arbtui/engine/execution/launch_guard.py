"""The launch guard: keeps work off the path from confirm to the wire.

From a confirm until that pair's legs are on their way:

- operator actions (the confirm first) wait to be journaled: the journal has one writer thread, so
  a write queued ahead of the pair's intent would delay the sends, and one running beside them
  would take the GIL from them. They keep their order (the actions table is an audit trail) and are
  written as soon as no pair is launching;
- the cyclic garbage collector waits: a collection costs 0.3 ms (young) to 50 ms (full) here, and
  would land inside a launch about once in a hundred. It runs right after instead; the window is a
  millisecond or two (the intent's write and two loop turns).
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from arbtui.engine.execution.model import Pair

HeldAction = tuple[int, str, str, str]  # (ts_ns, action, target, detail)


class LaunchGuard:
    def __init__(self, write_action: Callable[[HeldAction], None]) -> None:
        self._write = write_action
        self._launching = 0
        self._held: list[HeldAction] = []
        self._gc_was_enabled = True

    @property
    def launching(self) -> bool:
        return self._launching > 0

    def hold(self, pair: Pair, action: HeldAction | None = None) -> None:
        """``pair`` is launching; ``action`` (its confirm) is journaled once no pair is. Always ended
        by :meth:`release` (after the dispatch, or when the pair's task ends)."""
        pair.launching = True
        self._launching += 1
        if self._launching == 1:
            self._gc_was_enabled = gc.isenabled()
            gc.disable()
        if action is not None:
            self._held.append(action)

    def defer(self, action: HeldAction) -> bool:
        """Hold ``action`` if a pair is launching (True), else the caller writes it now (False)."""
        if not self._launching:
            return False
        self._held.append(action)
        return True

    def release(self, pair: Pair) -> None:
        """``pair`` is no longer launching (once; a no-op if it was not)."""
        if not pair.launching:
            return
        pair.launching = False
        self._launching -= 1
        if self._launching:
            return
        if self._gc_was_enabled:
            gc.enable()
        held, self._held = self._held, []
        for action in held:
            self._write(action)
