"""Exact money: wire rendering, step rounding, Decimal conversion, basis points and fee schedules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbtui.domain.fees import FeeModel, FeeSchedule
from arbtui.domain.money import ZERO, bps, ceil_to_step, floor_to_step, precision_of, to_decimal, to_wire

D = Decimal

# --- to_wire ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "precision", "wire"),
    [
        (D("29430.3"), 1, "29430.3"),
        (D("1.5"), 8, "1.50000000"),
        (D("29430.30"), 1, "29430.3"),  # trailing zeros beyond the precision are not "more places"
        (D("0.00000001"), 8, "0.00000001"),
        (D("65000"), 2, "65000.00"),
        (D("65000"), 0, "65000"),
        (D("1E+2"), 0, "100"),  # never scientific notation on the wire
        (D("1E-8"), 8, "0.00000001"),
        (D("0.62"), 2, "0.62"),
    ],
)
def test_to_wire_renders_exactly_at_the_precision(value: Decimal, precision: int, wire: str) -> None:
    assert to_wire(value, precision) == wire


@pytest.mark.parametrize(
    ("value", "precision"),
    [(D("29430.35"), 1), (D("1.005"), 2), (D("0.000000001"), 8), (D("0.5"), 0), (D("29430.25"), 1)],
)
def test_to_wire_refuses_to_round(value: Decimal, precision: int) -> None:
    with pytest.raises(ValueError, match="decimal places"):
        to_wire(value, precision)


@settings(max_examples=200, deadline=None)
@given(
    units=st.integers(min_value=0, max_value=10**12),
    places=st.integers(min_value=0, max_value=8),
    extra=st.integers(min_value=0, max_value=4),
)
def test_to_wire_round_trips_and_has_exactly_the_places(units: int, places: int, extra: int) -> None:
    value = D(units).scaleb(-places)
    wire = to_wire(value, places + extra)
    assert D(wire) == value
    if places + extra:
        assert len(wire.split(".")[1]) == places + extra
    else:
        assert "." not in wire


# --- steps -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "step", "floor", "ceil"),
    [
        (D("1.23456789"), D("0.01"), D("1.23"), D("1.24")),
        (D("1.23"), D("0.01"), D("1.23"), D("1.23")),  # already on the grid: unchanged both ways
        (D("65000.05"), D("0.1"), D("65000.0"), D("65000.1")),
        (D("7"), D("5"), D("5"), D("10")),
        (D("0.004"), D("0.01"), D("0"), D("0.01")),
        (D("0"), D("0.01"), D("0"), D("0")),
    ],
)
def test_floor_and_ceil_to_step(value: Decimal, step: Decimal, floor: Decimal, ceil: Decimal) -> None:
    assert floor_to_step(value, step) == floor
    assert ceil_to_step(value, step) == ceil


@settings(max_examples=200, deadline=None)
@given(
    value=st.decimals(min_value=0, max_value=10**6, places=10, allow_nan=False, allow_infinity=False),
    step=st.sampled_from([D("0.00000001"), D("0.01"), D("0.1"), D("1"), D("5"), D("0.25")]),
)
def test_floor_and_ceil_bracket_the_value_within_one_step(value: Decimal, step: Decimal) -> None:
    lo, hi = floor_to_step(value, step), ceil_to_step(value, step)
    assert lo % step == 0 and hi % step == 0
    assert lo <= value <= hi
    assert value - lo < step and hi - value < step


@pytest.mark.parametrize(
    ("step", "places"),
    [(D("0.01"), 2), (D("0.10"), 1), (D("5"), 0), (D("0.00000001"), 8), (D("1E+1"), 0), (D("0.5"), 1)],
)
def test_precision_of(step: Decimal, places: int) -> None:
    assert precision_of(step) == places


# --- to_decimal ------------------------------------------------------------------------------


def test_to_decimal_of_a_float_goes_through_its_repr() -> None:
    assert to_decimal(0.1) == D("0.1")
    assert to_decimal(0.1) != D(0.1)  # what the binary float really holds
    assert to_decimal(1e-8) == D("1E-8")
    assert to_decimal(65000.5) == D("65000.5")


def test_to_decimal_of_other_types() -> None:
    d = D("1.50")
    assert to_decimal(d) is d
    assert to_decimal(3) == D(3)
    assert to_decimal(" 0.0010 ") == D("0.0010")
    assert to_decimal("1e-3") == D("0.001")


@pytest.mark.parametrize("value", [True, False])
def test_to_decimal_rejects_booleans(value: bool) -> None:
    with pytest.raises(TypeError):
        to_decimal(value)


@pytest.mark.parametrize("value", ["NaN", "nan", "sNaN", "Infinity", "-inf", "abc", "", "1,5"])
def test_to_decimal_rejects_non_numbers_and_non_finite_strings(value: str) -> None:
    with pytest.raises(ValueError):
        to_decimal(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_to_decimal_rejects_non_finite_floats(value: float) -> None:
    """A non-finite float must be refused like the string "NaN" is.

    TOML has ``nan`` and ``inf`` float literals, so ``taker_fee = nan`` reaches this from a config file.
    """
    with pytest.raises(ValueError):
        to_decimal(value)


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, b"1"])
def test_to_decimal_rejects_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        to_decimal(value)


# --- bps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num", "den", "expected"),
    [
        (D("1"), D("100"), D("100.00")),
        (D("3.8"), D("301"), D("126.25")),  # 126.2458...
        (D("-3"), D("102.5"), D("-292.68")),  # -292.6829...
        (D("1"), D("3"), D("3333.33")),  # 3333.333...
        (D("0.0000125"), D("1"), D("0.12")),  # 0.125 -> half-even -> 0.12
        (D("0.0000135"), D("1"), D("0.14")),  # 0.135 -> half-even -> 0.14
        (D("5"), D("0"), ZERO),
    ],
)
def test_bps(num: Decimal, den: Decimal, expected: Decimal) -> None:
    assert bps(num, den) == expected


# --- fee schedules -----------------------------------------------------------------------------


def test_notional_fees_use_the_taker_or_maker_rate() -> None:
    fees = FeeSchedule(maker_rate=D("0.0002"), taker_rate=D("0.0010"))
    assert fees.model is FeeModel.NOTIONAL
    # 65000.1 * 0.5 = 32500.05; * 0.001 = 32.50005
    assert fees.fee(D("65000.1"), D("0.5")) == D("32.50005")
    # * 0.0002 = 6.50001
    assert fees.fee(D("65000.1"), D("0.5"), taker=False) == D("6.50001")
    assert fees.taker_fee_per_unit(D("3400")) == D("3.4")


def test_a_zero_rate_charges_nothing() -> None:
    fees = FeeSchedule(maker_rate=D("0"), taker_rate=D("0.001"))
    assert fees.fee(D("100"), D("2"), taker=False) == ZERO


@pytest.mark.parametrize(
    ("shares", "rate", "p", "fee"),
    [
        (D("100"), D("0.01"), D("0.5"), D("0.25")),  # 100 * 0.01 * 0.5 * 0.5
        (D("100"), D("0.01"), D("0.9"), D("0.09")),  # 100 * 0.01 * 0.9 * 0.1
        (D("100"), D("0.01"), D("0.1"), D("0.09")),  # symmetric in p and 1 - p
        (D("250"), D("0.02"), D("0.62"), D("1.178")),  # 250 * 0.02 = 5; 5 * 0.62 * 0.38 = 1.178
        (D("10"), D("0.01"), D("0.01"), D("0.00099")),  # near 0 the fee is tiny: 10 * 0.01 * 0.01 * 0.99
    ],
)
def test_probability_fee_is_shares_rate_p_one_minus_p(shares: Decimal, rate: Decimal, p: Decimal, fee: Decimal) -> None:
    fees = FeeSchedule(maker_rate=ZERO, taker_rate=rate, model=FeeModel.PROBABILITY)
    assert fees.fee(p, shares) == fee
    assert fees.fee(p, shares, taker=False) == ZERO  # makers pay nothing here
    assert fees.taker_fee_per_unit(p) * shares == fee


@settings(max_examples=200, deadline=None)
@given(cents=st.integers(min_value=1, max_value=99))
def test_probability_fee_peaks_at_one_half(cents: int) -> None:
    fees = FeeSchedule(maker_rate=ZERO, taker_rate=D("0.01"), model=FeeModel.PROBABILITY)
    p = D(cents) / 100
    assert fees.fee(p, D(100)) <= fees.fee(D("0.5"), D(100))
    assert fees.fee(p, D(100)) == fees.fee(1 - p, D(100))
