"""One measured figure, its target, and how to reproduce it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Figure:
    name: str  # "ingest", "frame_to_opportunity", "confirm_to_wire", "console", "replay", "memory"
    title: str  # one line for humans
    values: dict[str, Any]  # the measured numbers (units in the key names: _us, _per_s, _mb, _pct)
    target: str  # the target, in words ("at least 250,000 frames/s")
    met: bool | None  # None: could not be measured here (the reason is in ``note``)
    command: str  # reproduces this figure alone
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
