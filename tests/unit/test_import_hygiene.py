"""The engine never imports the UI (house rule 1): checked in a fresh interpreter, where nothing
else has imported Textual first."""

from __future__ import annotations

import json
import subprocess
import sys

ENGINE_MODULES = [
    "arbtui",
    "arbtui.config",
    "arbtui.engine",
    "arbtui.engine.engine",
    "arbtui.assembly",
    "arbtui.engine.execution",
    "arbtui.engine.execution.executor",
    "arbtui.engine.journal",
    "arbtui.headless",
    "arbtui.venues.simulated",
    "arbtui.venues.sim_remote",
    "arbtui.venues.kraken_book",
    "arbtui.venues.coinbase_book",
    "arbtui.venues.polymarket_book",
    "arbtui.venues.connection",
    "arbtui.venues.live",
    "arbtui.venues.kraken",
    "arbtui.venues.coinbase",
    "arbtui.venues.polymarket",
    "arbtui.venues.sim_feed",
    "arbtui.venues.secrets",
    "arbtui.venues.ratelimit",
    "arbtui.sim.market",
    "arbtui.sim.server",
    "arbtui.sim.loopback.kraken",
    "arbtui.sim.loopback.coinbase",
    "arbtui.sim.loopback.polymarket",
    "arbtui.sim.loopback.launcher",
    "arbtui.replay.session_format",
    "arbtui.replay.recorder",
    "arbtui.replay.player",
]

UI_PACKAGES = ("textual", "rich", "arbtui.ui")

# Imports every module above and every module of arbtui.domain (found on disk, so a new domain
# module is covered without editing this list), then reports what got loaded.
PROBE = """
import importlib, json, pkgutil, sys
names = json.loads(sys.argv[1])
for name in names:
    importlib.import_module(name)
import arbtui.domain
domain = sorted("arbtui.domain." + m.name for m in pkgutil.iter_modules(arbtui.domain.__path__))
for name in domain:
    importlib.import_module(name)
ui = json.loads(sys.argv[2])
loaded = sorted(m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in ui))
print(json.dumps({"domain": domain, "loaded": loaded}))
"""


def probe() -> dict[str, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(ENGINE_MODULES), json.dumps(UI_PACKAGES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[str]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_engine_domain_venues_sim_and_config_load_no_ui() -> None:
    result = probe()
    # The probe really imported the domain (an empty list would make the check below vacuous).
    assert {
        "arbtui.domain.book",
        "arbtui.domain.money",
        "arbtui.domain.fees",
        "arbtui.domain.clock",
        "arbtui.domain.orders",
        "arbtui.domain.instruments",
        "arbtui.domain.events",
    } <= set(result["domain"])
    assert result["loaded"] == [], f"UI modules loaded by engine-side imports: {result['loaded']}"


def test_the_probe_would_notice_a_ui_import() -> None:
    """The check can fail: importing rich in the same kind of interpreter is seen."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, rich.text; print('rich' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


ENGINE_PACKAGE_PROBE = """
import importlib, json, pkgutil, sys
import arbtui.engine, arbtui.engine.execution
names = ["arbtui.engine." + m.name for m in pkgutil.iter_modules(arbtui.engine.__path__)]
names += ["arbtui.engine.execution." + m.name for m in pkgutil.iter_modules(arbtui.engine.execution.__path__)]
for name in names:
    importlib.import_module(name)
above = ("arbtui.replay", "arbtui.assembly", "arbtui.ui", "arbtui.cli", "arbtui.headless", "textual")
print(json.dumps({"modules": names, "loaded": sorted(m for m in sys.modules if m.startswith(above))}))
"""


def test_the_engine_imports_nothing_above_it() -> None:
    """Layers: the engine imports no recorder, replay, composition root or UI (the replay side
    implements the engine's Recorder protocol; arbtui.assembly wires them)."""
    proc = subprocess.run(
        [sys.executable, "-c", ENGINE_PACKAGE_PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "arbtui.engine.engine" in result["modules"] and "arbtui.engine.execution.executor" in result["modules"]
    assert result["loaded"] == [], f"modules above the engine loaded by it: {result['loaded']}"
