"""Core dumps off once keys are loaded (issue 11 §5): a core file would hold every key in memory.

Each case runs in a child process (turning dumps off is for the life of a process, and must not be
done to pytest): the child turns core dumps on as far as it may, loads credentials through the real
loader (:func:`arbtui.venues.secrets.load_credentials`, which the command line's run uses) from fake
keys of the right shape, and reports ``RLIMIT_CORE`` and, on Linux, ``prctl(PR_GET_DUMPABLE)``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_CORE is POSIX")

LINUX = sys.platform.startswith("linux")

CHILD = """
import ctypes, json, resource, sys
from pathlib import Path

from arbtui.venues.secrets import SecretsError, load_credentials

def state():
    dumpable = None
    if sys.platform.startswith("linux"):
        dumpable = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
    return {"rlimit": list(resource.getrlimit(resource.RLIMIT_CORE)), "dumpable": dumpable}

try:  # core dumps on, as far as this process may, so that turning them off shows
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
except (ValueError, OSError):
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
report = {"before": state()}
secrets = Path(sys.argv[1]) if len(sys.argv) > 1 else None
try:
    loaded = load_credentials({"kraken": "kraken", "coinbase": "coinbase", "polymarket": "polymarket"}, secrets)
    report["loaded"] = sorted(loaded)
except SecretsError as exc:
    report["error"] = str(exc)
report["after"] = state()
print(json.dumps(report))
"""


def _child(tmp_path: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ARBTUI_")}
    environ["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-config")  # no default secrets file of the user's
    environ.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=tmp_path, env=environ, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _keys() -> dict[str, str]:
    """Fake keys of the right shape for all three venues (generated now; no real secret anywhere)."""
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        .decode()
    )
    return {
        "ARBTUI_KRAKEN_API_KEY": "kR4kenApiKeyValue0123456789",
        "ARBTUI_KRAKEN_API_SECRET": base64.b64encode(os.urandom(64)).decode(),
        "ARBTUI_COINBASE_KEY_NAME": "organizations/org-1/apiKeys/key-1",
        "ARBTUI_COINBASE_PRIVATE_KEY": pem,
        "ARBTUI_POLYMARKET_PRIVATE_KEY": "0x" + "11" * 32,
        "ARBTUI_POLYMARKET_API_KEY": "00000000-1111-2222-3333-444444444444",
        "ARBTUI_POLYMARKET_API_SECRET": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "ARBTUI_POLYMARKET_API_PASSPHRASE": os.urandom(16).hex(),
    }


def _assert_on(state: dict[str, Any]) -> None:
    """Dumps are on in the child before any key is loaded (else the test would prove nothing)."""
    assert state["rlimit"] != [0, 0]
    if LINUX:
        assert state["dumpable"] == 1


def _assert_off(state: dict[str, Any]) -> None:
    assert state["rlimit"] == [0, 0]
    if LINUX:
        assert state["dumpable"] == 0


def test_loading_keys_from_the_environment_turns_core_dumps_off(tmp_path: Path) -> None:
    report = _child(tmp_path, _keys())
    assert report["loaded"] == ["coinbase", "kraken", "polymarket"]
    _assert_on(report["before"])
    _assert_off(report["after"])


def test_loading_keys_from_a_secrets_file_turns_core_dumps_off(tmp_path: Path) -> None:
    keys = _keys()
    secrets = tmp_path / "secrets.toml"
    api_key, api_secret = keys["ARBTUI_KRAKEN_API_KEY"], keys["ARBTUI_KRAKEN_API_SECRET"]
    secrets.write_text(f'[kraken]\napi_key = "{api_key}"\napi_secret = "{api_secret}"\n', encoding="utf-8")
    secrets.chmod(0o600)
    report = _child(tmp_path, {}, str(secrets))
    assert report["loaded"] == ["kraken"]
    _assert_on(report["before"])
    _assert_off(report["after"])


def test_a_malformed_key_is_refused_with_core_dumps_already_off(tmp_path: Path) -> None:
    """The bad value was in memory all the same: dumps go off before the keys are judged."""
    keys = _keys() | {"ARBTUI_KRAKEN_API_SECRET": "n0t*base64!kraken-secret-VALUE"}
    report = _child(tmp_path, keys)
    assert report["error"] == (
        "ARBTUI_KRAKEN_API_SECRET: not base64 (expected the private key as Kraken shows it) (venue kraken)"
    )
    _assert_on(report["before"])
    _assert_off(report["after"])


def test_no_keys_leave_core_dumps_as_they_were(tmp_path: Path) -> None:
    """Without keys (market data only) nothing is protected, so nothing changes."""
    report = _child(tmp_path, {})
    assert report["loaded"] == []
    assert report["after"] == report["before"]
