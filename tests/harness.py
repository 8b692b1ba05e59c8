"""Deterministic apps for UI and snapshot tests (the same scenarios as ``arbtui screenshots``)."""

from __future__ import annotations

from arbtui.ui.scenarios import START_NS, make_app, warm_up

__all__ = ["START_NS", "make_app", "warm_up"]
