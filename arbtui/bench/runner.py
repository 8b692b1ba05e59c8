"""Runs every figure (or the named ones) and prints them as text or one JSON object."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import traceback
from typing import Any

import orjson

from arbtui.bench.figure import Figure

FIGURES = ("ingest", "frame_to_opportunity", "confirm_to_wire", "console", "replay", "memory")


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
    }


_CHILD = """
import sys, orjson, importlib
fig = importlib.import_module("arbtui.bench." + sys.argv[1]).run(sys.argv[2] == "1")
sys.stdout.buffer.write(orjson.dumps(fig.as_dict(), option=orjson.OPT_NON_STR_KEYS))
"""


def run_figures(names: tuple[str, ...], quick: bool) -> list[Figure]:
    """Each figure in a fresh interpreter: one figure's memory, threads and warm caches never colour
    another's (the memory figure reads the process's peak RSS)."""
    out: list[Figure] = []
    for name in names:
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, name, "1" if quick else "0"],
                stdout=subprocess.PIPE,
                check=False,
                timeout=1800,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"exit status {proc.returncode}")
            fig = Figure(**orjson.loads(proc.stdout))
        except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the others
            fig = Figure(name, name, {}, "", None, f"arbtui bench --only {name}", f"failed: {exc!r}")
            traceback.print_exc(file=sys.stderr)
        fig.details.setdefault("wall_s", round(time.perf_counter() - started, 2))
        out.append(fig)
    return out


def render_text(figs: list[Figure]) -> str:
    lines = []
    for f in figs:
        verdict = {True: "MET", False: "MISSED", None: "NOT MEASURED"}[f.met]
        values = ", ".join(f"{k} {v}" for k, v in f.values.items())
        lines.append(f"{f.title}: {values}")
        lines.append(f"    target {f.target}: {verdict}{'  (' + f.note + ')' if f.note else ''}")
        lines.append(f"    reproduce: {f.command}")
    return "\n".join(lines)
