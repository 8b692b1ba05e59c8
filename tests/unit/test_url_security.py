"""Venue URLs (issue 11 §5): plain ``ws://`` / ``http://`` only to this machine, since keys and signed
requests would travel in clear; the host judged as the client libraries read it; no user info.

config.py refuses user info in every venue URL, even to loopback and even with ``wss://``: keys never
travel in a URL, and user info is what makes ``ws://127.0.0.1:@evil.example/`` look like loopback to a
reader that stops at the first colon while websockets, yarl and urlsplit connect to ``evil.example``.
Loopback is a loopback IP written as one (127.0.0.0/8, ``::1``) or exactly ``localhost`` (any case:
host names are case-insensitive); spellings only a lenient resolver takes for loopback are refused.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from arbtui.config import ConfigError, check_venue_url, parse_config

WS, HTTP = ("wss", "ws"), ("https", "http")
NOT_LOOPBACK = "which is not a loopback address"
USER_INFO = "has user info (user@ or user:password@ before the host); venue URLs may not"

REFUSED: list[tuple[str, tuple[str, str], str]] = [
    # user info: the host is what follows the @
    ("ws://127.0.0.1:@evil.example:80/", WS, USER_INFO),
    ("ws://127.0.0.1:80@evil.example/", WS, USER_INFO),
    ("ws://127.0.0.1\\@evil.example/", WS, USER_INFO),
    ("ws://127.0.0.1%2f@evil.example/", WS, USER_INFO),
    ("ws://user:pw@127.0.0.1/", WS, USER_INFO),  # to loopback too: no URL carries credentials
    ("ws://user@127.0.0.1:8080/", WS, USER_INFO),
    ("wss://user:pw@ws.kraken.com/v2", WS, USER_INFO),  # encrypted, but still a credential in a URL
    ("http://user:pw@127.0.0.1:8080/", HTTP, USER_INFO),
    # hosts that only look like loopback
    ("ws://localhost.evil/", WS, NOT_LOOPBACK),
    ("ws://127.0.0.1.evil.example/", WS, NOT_LOOPBACK),
    ("ws://localhost./", WS, NOT_LOOPBACK),
    ("http://127.1/", HTTP, NOT_LOOPBACK),  # a resolver's shorthand for 127.0.0.1: refused, not guessed
    ("ws://2130706433/", WS, NOT_LOOPBACK),
    ("ws://0x7f.1/", WS, NOT_LOOPBACK),
    ("ws://%31%32%37.0.0.1/", WS, NOT_LOOPBACK),
    ("ws://0.0.0.0/", WS, NOT_LOOPBACK),  # "any address", not loopback
    ("ws://[::]:8080/", WS, NOT_LOOPBACK),
    ("ws://10.0.0.1/", WS, NOT_LOOPBACK),
    ("ws://evil.example/", WS, NOT_LOOPBACK),
    ("http://evil.example/", HTTP, NOT_LOOPBACK),
    # the scheme's case does not get around the plain-text rule
    ("WS://evil.example/", WS, NOT_LOOPBACK),
    ("hTTp://evil.example/", HTTP, NOT_LOOPBACK),
    # parsers that disagree about the host: refused rather than guessed (even when both are loopback)
    ("ws://[::ffff:127.0.0.1]/", WS, "is read differently by the client libraries"),
    ("ws://[0:0:0:0:0:0:0:1]/", WS, "is read differently by the client libraries"),
    # not URLs arbtui can use
    ("ws://127.0.0.1 /", WS, "contains spaces or control characters"),
    ("ws://127.0.0.1:99999/", WS, "is not a valid URL"),
    ("ws://", WS, "is not a valid URL"),
    ("ws://127.0.0.1#@evil.example/", WS, "is not a valid URL"),
    ("ftp://127.0.0.1/", WS, "expected a wss:// or ws:// URL"),
    ("https://ws.kraken.com/v2", WS, "expected a wss:// or ws:// URL"),
    ("wss://ws.kraken.com/v2", HTTP, "expected a https:// or http:// URL"),
    ("127.0.0.1:8080", WS, "expected a wss:// or ws:// URL"),
]

ALLOWED: list[tuple[str, tuple[str, str], str]] = [
    ("ws://127.0.0.1:8080/", WS, "ws://127.0.0.1:8080"),
    ("ws://127.255.255.254:9/", WS, "ws://127.255.255.254:9"),  # all of 127.0.0.0/8
    ("ws://[::1]:8080/", WS, "ws://[::1]:8080"),
    ("http://[::1]:8080", HTTP, "http://[::1]:8080"),
    ("ws://localhost:18801/", WS, "ws://localhost:18801"),
    ("ws://LOCALHOST:1/", WS, "ws://LOCALHOST:1"),
    ("WS://127.0.0.1:8080/", WS, "ws://127.0.0.1:8080"),  # the scheme is lower-cased
    ("Http://127.0.0.1:8080/path?q=1", HTTP, "http://127.0.0.1:8080/path?q=1"),
    ("wss://ws.kraken.com/v2", WS, "wss://ws.kraken.com/v2"),
    ("WsS://advanced-trade-ws.coinbase.com", WS, "wss://advanced-trade-ws.coinbase.com"),
    ("https://api.kraken.com", HTTP, "https://api.kraken.com"),
    ("wss://evil.example/", WS, "wss://evil.example"),  # encrypted: any host (its certificate is checked)
    # an @ after the host is part of the query: every client library connects to 127.0.0.1
    ("ws://127.0.0.1?@evil.example/", WS, "ws://127.0.0.1?@evil.example"),
]


@pytest.mark.parametrize(("url", "schemes", "reason"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(url: str, schemes: tuple[str, str], reason: str) -> None:
    secure, plain = schemes
    with pytest.raises(ValueError) as info:
        check_venue_url(url, secure=secure, plain=plain)
    assert reason in str(info.value)
    assert "pw" not in str(info.value)  # a password is never echoed


@pytest.mark.parametrize(("url", "schemes", "expected"), ALLOWED, ids=[c[0] for c in ALLOWED])
def test_allowed(url: str, schemes: tuple[str, str], expected: str) -> None:
    secure, plain = schemes
    assert check_venue_url(url, secure=secure, plain=plain) == expected


def _kraken(**urls: str) -> dict[str, Any]:
    lot = "0.00000001"
    return {
        "mode": "paper",
        "venues": {"kraken": {"kind": "kraken", "maker_fee": "0", "taker_fee": "0.004", **urls}},
        "markets": {
            "BTC-USD": {
                "base": "BTC",
                "quote": "USD",
                "max_quantity": "1",
                "venues": {"kraken": {"symbol": "BTC/USD", "tick_size": "0.1", "lot_size": lot}},
            }
        },
    }


def test_the_config_error_names_the_key_and_masks_user_info() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_kraken(ws_url="ws://127.0.0.1:hunter2pass@evil.example:80/"), "c.toml")
    assert info.value.problems == [
        "venues.kraken.ws_url: expected a wss:// URL (or ws://127.0.0.1:PORT for a loopback test server); "
        f"'ws://***@evil.example:80/' {USER_INFO}"
    ]
    assert "hunter2pass" not in str(info.value)


def test_a_plain_rest_url_to_a_real_host_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_kraken(rest_url="http://api.kraken.com"), "c.toml")
    (problem,) = info.value.problems
    assert problem.startswith("venues.kraken.rest_url: expected a https:// URL (or http://127.0.0.1:PORT")
    assert "uses plain http:// to api.kraken.com, which is not a loopback address" in problem


def test_loopback_and_secure_urls_are_kept() -> None:
    config = parse_config(_kraken(ws_url="WS://[::1]:18801/", rest_url="https://api.kraken.com/"), "c.toml")
    real = config.venue("kraken").real
    assert real is not None
    assert (real.ws_url, real.rest_url) == ("ws://[::1]:18801", "https://api.kraken.com")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:@evil.example:8765/", USER_INFO),
        ("http://evil.example:8765", NOT_LOOPBACK),
        ("https://127.0.0.1:8765", "expected a http:// URL"),  # the simulator speaks plain HTTP only
    ],
)
def test_a_remote_simulator_is_on_loopback_only(url: str, reason: str) -> None:
    doc = _kraken()
    doc["mode"] = "sim"
    doc["venues"] = {"kraken": {"kind": "remote-sim", "maker_fee": "0", "taker_fee": "0.004", "url": url}}
    doc["markets"]["BTC-USD"]["sim"] = {"start_price": "65000"}
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "c.toml")
    (problem,) = info.value.problems
    assert problem.startswith("venues.kraken.url: expected an http://127.0.0.1:PORT URL")
    assert reason in problem


def test_check_config_refuses_the_user_info_trick_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "evil.toml"
    path.write_text(tomli_w.dumps(_kraken(ws_url="ws://127.0.0.1:@evil.example:80/")), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "arbtui", "check-config", str(path)], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"{path}: venues.kraken.ws_url: expected a wss:// URL (or ws://127.0.0.1:PORT for a loopback test server); "
        f"'ws://***@evil.example:80/' {USER_INFO}",
        f"{path}: 1 problem(s)",
    ]
