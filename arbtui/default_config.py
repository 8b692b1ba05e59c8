"""The built-in demo configuration: what ``arbtui`` runs with no config file, and what
``arbtui init`` writes. The top-level ``config.toml`` is the same document with every key
commented; ``tests/unit/test_config.py`` checks that the two agree.
"""

from __future__ import annotations

from typing import Any

_SIM_BALANCES_SPOT = {"USD": "250000", "BTC": "3", "ETH": "40"}

DEFAULT_CONFIG: dict[str, Any] = {
    "mode": "sim",
    "seed": 7,
    "detector": {
        "slippage_floor_bps": "1.0",
        "volatility_multiplier": "1.0",
        "expected_latency_ms": 150,
        "volatility_halflife_s": "30",
        "min_net_edge_bps": "0",
        "stale_after_ms": 3000,
    },
    "risk": {
        "max_notional": "50000",
        "min_expected_pnl": "0",
        "max_open_exposure_per_venue": "150000",
        "max_open_exposure_per_market": "100000",
        "max_pairs_in_flight": 4,
        "daily_loss_limit": "2500",
        "max_book_age_ms": 1500,
    },
    "execution": {
        "order_timeout_ms": 2000,
        "status_retries": 5,
        "status_backoff_ms": 250,
        "unwind_band_bps": "50",
        "unwind_attempts": 4,
        "unwind_backoff_ms": 200,
        "complete_missing_leg": False,
        "armed_min_net_edge_bps": "5",
        "breaker_consecutive_failures": 3,
        "breaker_window_s": 60,
        "breaker_failure_rate": "0.5",
        "breaker_min_samples": 10,
        "legs": "parallel",
        "quote_ttl_ms": 2000,
        "late_fill_watch_s": 60,
    },
    "account": {
        "balance_refresh_s": 30,
        "balance_retries": 3,
        "balance_backoff_ms": 500,
        "balance_timeout_ms": 5000,
        "drift_tolerance": "0.01",
    },
    "ui": {"refresh_hz": 10, "book_depth": 10},
    "venues": {
        "kraken": {
            "kind": "simulated",
            "fee_model": "notional",
            "maker_fee": "0.0000",
            "taker_fee": "0.0010",
            "sim": {
                "ack_latency_ms": 45,
                "latency_jitter_ms": 25,
                "reject_rate": "0.02",
                "timeout_rate": "0.01",
                "partial_fill_rate": "0.05",
                "lag_ms": 0,
                "noise_bps": "1.5",
                "update_interval_ms": 100,
                "spread_ticks": 2,
                "depth": 15,
                "balances": dict(_SIM_BALANCES_SPOT),
            },
        },
        "coinbase": {
            "kind": "simulated",
            "fee_model": "notional",
            "maker_fee": "0.0000",
            "taker_fee": "0.0005",
            "sim": {
                "ack_latency_ms": 60,
                "latency_jitter_ms": 30,
                "reject_rate": "0.02",
                "timeout_rate": "0.01",
                "partial_fill_rate": "0.05",
                "lag_ms": 2000,
                "noise_bps": "1.5",
                "update_interval_ms": 80,
                "spread_ticks": 6,
                "depth": 15,
                "balances": dict(_SIM_BALANCES_SPOT),
            },
        },
        "polymarket": {
            "kind": "simulated",
            "fee_model": "probability",
            "maker_fee": "0",
            "taker_fee": "0.01",
            "sim": {
                "ack_latency_ms": 120,
                "latency_jitter_ms": 60,
                "reject_rate": "0.02",
                "timeout_rate": "0.01",
                "partial_fill_rate": "0.05",
                "lag_ms": 0,
                "noise_bps": "40",
                "update_interval_ms": 250,
                "spread_ticks": 1,
                "depth": 10,
                "balances": {"USDC": "20000"},
            },
        },
    },
    "markets": {
        "BTC-USD": {
            "base": "BTC",
            "quote": "USD",
            "max_quantity": "2",
            "sim": {
                "start_price": "65000",
                "volatility_bps": "1.0",
                "jump_rate_per_min": "6",
                "jump_bps": "20",
                "level_size": "0.25",
            },
            "venues": {
                "kraken": {"symbol": "BTC/USD", "tick_size": "0.1", "lot_size": "0.00000001"},
                "coinbase": {"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": "0.00000001"},
            },
        },
        "ETH-USD": {
            "base": "ETH",
            "quote": "USD",
            "max_quantity": "25",
            "sim": {
                "start_price": "3400",
                "volatility_bps": "1.4",
                "jump_rate_per_min": "6",
                "jump_bps": "20",
                "level_size": "3",
            },
            "venues": {
                "kraken": {"symbol": "ETH/USD", "tick_size": "0.01", "lot_size": "0.00000001"},
                "coinbase": {"symbol": "ETH-USD", "tick_size": "0.01", "lot_size": "0.00000001"},
            },
        },
        "FEDCUT-YES": {
            "kind": "outcome",
            "event": "FEDCUT",
            "outcome": "YES",
            "base": "FEDCUT-YES",
            "quote": "USDC",
            "max_quantity": "2000",
            "sim": {
                "start_price": "0.62",
                "volatility_bps": "5",
                "jump_rate_per_min": "4",
                "jump_bps": "250",
                "level_size": "400",
            },
            "venues": {
                "polymarket": {
                    "symbol": "71321045679252212594626385532706912750332728571942532289631379312455583992563",
                    "tick_size": "0.01",
                    "lot_size": "0.01",
                    "min_size": "5",
                },
            },
        },
        "FEDCUT-NO": {
            "kind": "outcome",
            "event": "FEDCUT",
            "outcome": "NO",
            "base": "FEDCUT-NO",
            "quote": "USDC",
            "max_quantity": "2000",
            "sim": {"level_size": "400", "lag_ms": 1200},
            "venues": {
                "polymarket": {
                    "symbol": "52114319501245915516055106046884209969926127482827954674443846427813813222426",
                    "tick_size": "0.01",
                    "lot_size": "0.01",
                    "min_size": "5",
                },
            },
        },
    },
}
