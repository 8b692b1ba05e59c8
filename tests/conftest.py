"""Test-wide isolation: no test writes to the user's data directory (journals go to a tmp dir), and
nothing a test makes with :mod:`tempfile` (the UI scenarios' ``arbtui-ui-*`` journal folders) is
left in the system temp folder: each test's temp folder is its own pytest tmp path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture(autouse=True)
def _temp_files_under_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tempfile"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
