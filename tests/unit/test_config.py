"""Configuration: every kind of error names the file, the key path and what was expected."""

from __future__ import annotations

import copy
import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbtui.config import ConfigError, default_config, default_config_data, load_config, parse_config
from arbtui.domain.fees import FeeModel

ROOT = Path(__file__).resolve().parents[2]


def _data() -> dict[str, Any]:
    return copy.deepcopy(default_config_data())


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "test.toml")
    assert str(info.value).startswith("test.toml: ")
    return info.value.problems


def test_repository_config_is_the_builtin_default() -> None:
    from_file = load_config(ROOT / "config.toml")
    assert dataclasses.replace(from_file, source="x") == dataclasses.replace(default_config(), source="x")


def test_values_are_exact_decimals() -> None:
    cfg = default_config()
    kraken = cfg.venue("kraken")
    assert kraken.fees.taker_rate == Decimal("0.0010")
    assert cfg.venue("polymarket").fees.model is FeeModel.PROBABILITY
    btc = next(m for m in cfg.markets if m.id == "BTC-USD")
    listing = next(lc for lc in btc.listings if lc.venue == "kraken")
    assert listing.tick_size == Decimal("0.1") and listing.price_precision == 1 and listing.qty_precision == 8


def test_unknown_key_is_named_with_its_path() -> None:
    data = _data()
    data["venues"]["kraken"]["taker_fees"] = "0.001"
    (problem,) = _problems(data)
    assert problem.startswith("venues.kraken.taker_fees: unknown key")
    assert "taker_fee" in problem  # the expected keys are listed


def test_unknown_top_level_key() -> None:
    data = _data()
    data["detectr"] = {}
    assert _problems(data) == [_problems(data)[0]]
    assert _problems(data)[0].startswith("detectr: unknown key")


def test_wrong_type_names_key_and_expectation() -> None:
    data = _data()
    data["detector"]["expected_latency_ms"] = "150"
    (problem,) = _problems(data)
    assert problem == "detector.expected_latency_ms: expected an integer, got a string ('150')"


def test_decimal_given_as_boolean_is_a_type_error() -> None:
    data = _data()
    data["risk"]["max_notional"] = True
    (problem,) = _problems(data)
    assert problem.startswith("risk.max_notional: expected a decimal number")


def test_negative_fee_is_impossible() -> None:
    data = _data()
    data["venues"]["kraken"]["taker_fee"] = "-0.001"
    (problem,) = _problems(data)
    assert problem == "venues.kraken.taker_fee: expected a number >= 0, got '-0.001'"


def test_zero_tick_is_impossible() -> None:
    data = _data()
    data["markets"]["BTC-USD"]["venues"]["kraken"]["tick_size"] = "0"
    (problem,) = _problems(data)
    assert problem == "markets.BTC-USD.venues.kraken.tick_size: expected a number greater than 0, got '0'"


def test_missing_required_key() -> None:
    data = _data()
    del data["venues"]["coinbase"]["maker_fee"]
    (problem,) = _problems(data)
    assert problem.startswith("venues.coinbase.maker_fee: missing (expected a fee rate")


def test_listing_on_undefined_venue() -> None:
    data = _data()
    data["markets"]["ETH-USD"]["venues"]["bitstamp"] = {"symbol": "ethusd", "tick_size": "0.1", "lot_size": "0.01"}
    problems = _problems(data)
    assert any(p.startswith("markets.ETH-USD.venues.bitstamp: names venue 'bitstamp'") for p in problems)


def test_lot_sizes_must_divide_each_other() -> None:
    data = _data()
    data["markets"]["BTC-USD"]["venues"]["kraken"]["lot_size"] = "0.00000003"
    data["markets"]["BTC-USD"]["venues"]["coinbase"]["lot_size"] = "0.00000002"
    problems = _problems(data)
    assert any(p.startswith("markets.BTC-USD.venues: lot sizes") for p in problems)


def test_event_needs_both_tokens() -> None:
    data = _data()
    del data["markets"]["FEDCUT-NO"]
    problems = _problems(data)
    assert any("event 'FEDCUT' expected both a YES and a NO token" in p for p in problems)


def test_outcome_start_price_must_be_a_probability() -> None:
    data = _data()
    data["markets"]["FEDCUT-YES"]["sim"]["start_price"] = "1.5"
    (problem,) = _problems(data)
    assert problem.startswith("markets.FEDCUT-YES.sim.start_price: expected a probability")


def test_every_problem_is_reported_at_once() -> None:
    data = _data()
    data["ui"]["refresh_hz"] = 0
    data["risk"]["max_notional"] = "-5"
    data["seed"] = "seven"
    problems = _problems(data)
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {"ui.refresh_hz", "risk.max_notional", "seed"}


def test_bad_toml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("mode = \n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not valid TOML")


def test_missing_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "cannot read" in str(info.value)
