"""The command line: --help, check-config exit codes, init refusing to overwrite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from arbtui.cli import main
from arbtui.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "arbtui", "--help"], capture_output=True, text=True, check=True)
    for word in ("run", "check-config", "init", "--config", "--seed"):
        assert word in out.stdout


def test_check_config_valid_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config.toml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_check_config_wrong_type_exits_2_naming_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "config.toml").read_text(encoding="utf-8").replace("seed = 7 ", 'seed = "seven" ', 1)
    assert 'seed = "seven"' in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: seed: expected an integer, got a string ('seven')" in err


def test_init_writes_a_valid_config_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert main(["init", str(path)]) == 0
    first = path.read_text(encoding="utf-8")
    assert (
        load_config(path).venue("kraken").fees.taker_rate
        == load_config(ROOT / "config.toml").venue("kraken").fees.taker_rate
    )
    path.write_text(first + "\n# my edits\n", encoding="utf-8")
    assert main(["init", str(path)]) == 1
    assert path.read_text(encoding="utf-8").endswith("# my edits\n")  # untouched
    assert main(["init", str(path), "--force"]) == 0
    assert path.read_text(encoding="utf-8") == first


def test_run_with_bad_config_exits_2_without_starting_the_ui(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("mode = 3\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "arbtui", "--config", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{bad}: mode: expected a non-empty string" in proc.stderr
