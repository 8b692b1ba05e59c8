"""The frame_to_opportunity figure's stream and rig do what the figure says (behaviour, never timings)."""

from __future__ import annotations

from arbtui.bench.frame_to_opportunity import _scenario, generate


def test_the_stream_is_deterministic_and_alternates_both_venues() -> None:
    snapshots, frames = generate(300, seed=3)
    again = generate(300, seed=3)
    assert [f.raw for f in snapshots + frames] == [f.raw for f in again[0] + again[1]]
    assert {f.venue for f in snapshots} == {"kraken", "coinbase"}
    roles = [f.role for f in frames]
    assert roles.count("open") == roles.count("close") > 5
    assert {f.venue for f in frames if f.role == "open"} == {"kraken", "coinbase"}


async def test_sparse_frames_all_verify_and_every_opened_spread_is_detected() -> None:
    result = await _scenario("sparse", True, 600)
    assert result["integrity_failures"] == 0 and result["malformed"] == 0
    assert result["opens"] > 10 and result["opens_coalesced_away"] == 0  # one frame per turn: nothing merged
    assert result["detected"] == result["opens"]
    assert abs(result["expired"] - result["opens"]) <= 1  # the measured frames may start inside an open spread
    assert result["updated"] > 0 and result["updates_deferred"] == 0
    assert result["market_pricings_per_frame"] == 1.0


async def test_a_flood_is_coalesced() -> None:
    result = await _scenario("flood", True, 2_000, rate=200_000)  # far faster than one core prices
    assert result["integrity_failures"] == 0 and result["malformed"] == 0
    assert result["updates_deferred"] > 0 and result["market_pricings_per_frame"] < 1
