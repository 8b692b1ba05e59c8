"""Bad input (issue 11 §4): each case is one line on stderr naming the file, key, option or variable and
what was expected, exit code 2, and no traceback, before anything starts.

Most cases call :func:`arbtui.cli.main` in this process (it returns the exit code; argparse's refusals
raise ``SystemExit(2)``); a handful run ``python -m arbtui`` as a user would, and so do the cases that
need a folder or file the process cannot write, and the ones that load keys (loading keys turns core
dumps off for the whole process, which a test must not do to pytest).
"""

from __future__ import annotations

import base64
import ctypes
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from arbtui.cli import main
from arbtui.config import default_config_data
from arbtui.engine.journal import APPLICATION_ID, JournalError, connect_journal, prepare_journal

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK_WS, LOOPBACK_REST = "ws://127.0.0.1:9", "http://127.0.0.1:9"  # the discard port: nothing leaves 127.0.0.1


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from tmp_path (``arbtui`` alone reads ./config.toml), with no keys and no secrets file of the
    user's: ARBTUI_* variables removed, XDG_CONFIG_HOME under tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for name in list(os.environ):
        if name.startswith("ARBTUI_"):
            monkeypatch.delenv(name)


def the_error(stderr: str) -> str:
    """The one line of an error. argparse's usage lines (``usage:`` and their indented continuations)
    and check-config's closing count (``PATH: 1 problem(s)``) aside, stderr holds exactly that line."""
    assert "Traceback" not in stderr, stderr
    lines = [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("usage:", " ")) and not line.endswith(" problem(s)")
    ]
    assert len(lines) == 1, stderr
    return lines[0]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)``: the exit code, stdout, and the one error line (``""`` if stderr is empty)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse refuses an option's value
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, the_error(err) if err.strip() else ""


_PR_CAPBSET_DROP = 24  # <linux/prctl.h>
_DAC_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _drop_dac_caps() -> None:
    """preexec_fn: drop the capabilities that let root ignore permission bits from the bounding set, so
    that the program exec'd next runs as a root without them (file modes apply to it as to anyone)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _DAC_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _preexec() -> Callable[[], None] | None:
    """What makes a child respect file modes: nothing for a normal user; for root, dropping the DAC
    capabilities (None if that is not possible here: see :func:`unwritable`)."""
    if os.geteuid() != 0:
        return None
    if not sys.platform.startswith("linux"):
        return None
    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_drop_dac_caps, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    return _drop_dac_caps


PREEXEC = _preexec()
MODES_APPLY = os.geteuid() != 0 or PREEXEC is not None


def run_cli(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m arbtui ARGV`` from tmp_path, as a user runs it; as root, without the capabilities that
    ignore file modes (so a read-only folder is read-only to it)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ARBTUI_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "arbtui", *argv],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        preexec_fn=PREEXEC,
    )


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder no file can be created in, for :func:`run_cli`'s child.

    chmod 0500 stops a normal user. Root ignores modes (CAP_DAC_OVERRIDE), so as root the child runs
    with that capability dropped and the same 0500 folder stops it too. Where root cannot drop it,
    the folder is a path under a regular file (``file/sub``), which nobody can create files in.
    Never skipped: the refusal is what is under test."""
    if MODES_APPLY:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)  # so that pytest can remove it
    else:
        (tmp_path / "file").write_text("a regular file\n", encoding="utf-8")
        yield tmp_path / "file" / "sub"


def real_venues_config(tmp_path: Path) -> Path:
    """A paper configuration with Kraken, Coinbase and Polymarket, every URL on 127.0.0.1's discard port:
    nothing can reach a real venue even if a check let a run start."""

    def venue(kind: str) -> dict[str, str]:
        return {"kind": kind, "maker_fee": "0", "taker_fee": "0.004", "ws_url": LOOPBACK_WS, "rest_url": LOOPBACK_REST}

    def outcome(side: str, token: str) -> dict[str, Any]:
        listing = {"symbol": token, "tick_size": "0.01", "lot_size": "0.01"}
        return {"kind": "outcome", "event": "FED", "outcome": side, "base": f"FED-{side}", "quote": "USDC",
                "max_quantity": "10", "venues": {"polymarket": listing}}  # fmt: skip

    lot = "0.00000001"
    doc = {
        "mode": "paper",
        "venues": {
            "kraken": venue("kraken"),
            "coinbase": venue("coinbase"),
            "polymarket": {**venue("polymarket"), "fee_model": "probability"},
        },
        "markets": {
            "BTC-USD": {
                "base": "BTC",
                "quote": "USD",
                "max_quantity": "0.05",
                "venues": {
                    "kraken": {"symbol": "BTC/USD", "tick_size": "0.1", "lot_size": lot},
                    "coinbase": {"symbol": "BTC-USD", "tick_size": "0.01", "lot_size": lot},
                },
            },
            "FED-YES": outcome("YES", "101"),
            "FED-NO": outcome("NO", "102"),
        },
    }
    path = tmp_path / "real.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


def coinbase_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


HEADLESS = ("--headless", "--duration", "1")


# ------------------------------------------------------------------------------------------------
# Files that are not UTF-8
# ------------------------------------------------------------------------------------------------


def test_a_config_file_that_is_not_utf8_names_its_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('mode = "sim"\n# café\n'.encode("latin-1"))
    proc = run_cli(tmp_path, "check-config", str(bad))
    assert proc.returncode == 2
    assert the_error(proc.stderr) == f"{bad}: not UTF-8 text (a TOML file must be UTF-8): line 2, column 6"


def test_run_with_a_config_that_is_not_utf8_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"\xff\xfemode = 'sim'\n")
    code, _, err = cli(capsys, "run", "--config", str(bad), *HEADLESS)
    assert code == 2
    assert err == f"{bad}: not UTF-8 text (a TOML file must be UTF-8): line 1, column 1"


def test_a_secrets_file_that_is_not_utf8_names_the_line_but_not_the_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_bytes(b'[kraken]\napi_key = "plainkey123"\napi_secret = "QQvalue\xe9QQvalue"\n')
    secrets.chmod(0o600)
    code, out, err = cli(
        capsys, "run", "--config", str(real_venues_config(tmp_path)), "--secrets", str(secrets), *HEADLESS
    )
    assert code == 2
    assert err == f"arbtui: {secrets}: the secrets file is not UTF-8 text (line 3)"
    assert "QQvalue" not in out + err and "plainkey123" not in out + err


# ------------------------------------------------------------------------------------------------
# Record path
# ------------------------------------------------------------------------------------------------


def test_a_record_path_that_is_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "sessions"
    folder.mkdir()
    code, _, err = cli(capsys, "run", *HEADLESS, "--record", str(folder))
    assert code == 2
    assert err == f"arbtui: --record {folder}: is a folder; expected the session's file, e.g. FOLDER/session.jsonl.gz"
    assert list(folder.iterdir()) == []


def test_a_record_path_under_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    target = tmp_path / "file" / "sub" / "s.jsonl"
    code, _, err = cli(capsys, "run", *HEADLESS, "--record", str(target))
    assert code == 2
    assert err == f"arbtui: --record {target}: {tmp_path / 'file'} is a file, not a folder"


def test_a_record_path_in_a_read_only_folder_is_refused(tmp_path: Path, read_only: Path) -> None:
    """As root, the child cannot write the 0500 folder because it runs without CAP_DAC_OVERRIDE (see
    the ``read_only`` fixture)."""
    target = read_only / "s.jsonl.gz"
    proc = run_cli(tmp_path, "run", *HEADLESS, "--record", str(target))
    assert proc.returncode == 2
    line = the_error(proc.stderr)
    assert line.startswith(f"arbtui: --record {target}: ")
    if MODES_APPLY:
        assert line == f"arbtui: --record {target}: cannot write the session file: Permission denied"
    assert not target.exists()


# ------------------------------------------------------------------------------------------------
# Journal path
# ------------------------------------------------------------------------------------------------


def _journal_refused(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    code, out, err = cli(capsys, "run", *HEADLESS, "--journal", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"arbtui: --journal {path}: ")
    return err.removeprefix(f"arbtui: --journal {path}: ")


def test_a_journal_path_that_is_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "j"
    folder.mkdir()
    assert _journal_refused(capsys, folder) == "is a folder; expected the journal's file, e.g. FOLDER/journal.sqlite"
    assert list(folder.iterdir()) == []


def test_dev_null_as_the_journal_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    reason = _journal_refused(capsys, Path("/dev/null"))
    assert reason == "is not a regular file (a device such as /dev/null cannot hold a journal)"


def test_a_read_only_journal_file_is_refused(tmp_path: Path) -> None:
    """A journal of arbtui's made read-only (0400). As root the child runs without CAP_DAC_OVERRIDE, so
    the mode applies to it; where that capability cannot be dropped, /proc/version (a regular file root
    cannot write either) stands in."""
    if MODES_APPLY:
        path = tmp_path / "journal.sqlite"
        prepare_journal(path)
        before = path.read_bytes()
        path.chmod(0o400)
    else:
        path, before = Path("/proc/version"), b""
    proc = run_cli(tmp_path, "run", *HEADLESS, "--journal", str(path))
    assert proc.returncode == 2
    line = the_error(proc.stderr)
    assert line.startswith(f"arbtui: --journal {path}: ")
    if MODES_APPLY:
        assert line == f"arbtui: --journal {path}: the file is read-only"
        assert path.read_bytes() == before
        path.chmod(0o600)


def test_a_journal_in_a_read_only_folder_is_refused(tmp_path: Path, read_only: Path) -> None:
    """See the ``read_only`` fixture for how a folder is read-only to a root child."""
    path = read_only / "journal.sqlite"
    proc = run_cli(tmp_path, "run", *HEADLESS, "--journal", str(path))
    assert proc.returncode == 2
    line = the_error(proc.stderr)
    assert line.startswith(f"arbtui: --journal {path}: ")
    if MODES_APPLY:
        assert line == f"arbtui: --journal {path}: the folder {read_only} is not writable"
    assert not path.exists()


def _a_journal_with_rows(path: Path) -> bytes:
    conn = connect_journal(path)
    for i in range(300):
        conn.execute(
            "INSERT INTO actions(ts_ns, action, target, detail) VALUES (?, 'confirm', 'BTC-USD', ?)", (i, "x" * 200)
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to damage
    conn.close()
    return path.read_bytes()


DAMAGED = "the SQLite file is damaged (truncated or corrupt); move it aside to start a new one"


@pytest.mark.parametrize("keep", [50, 4096, "half", "all but a page"])
def test_a_truncated_journal_is_refused_and_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep: int | str
) -> None:
    path = tmp_path / "journal.sqlite"
    data = _a_journal_with_rows(path)
    n = keep if isinstance(keep, int) else len(data) // 2 if keep == "half" else len(data) - 4096
    path.write_bytes(data[:n])
    assert _journal_refused(capsys, path) == DAMAGED
    assert path.read_bytes() == data[:n]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("journal")) == ["journal.sqlite"]


def test_a_corrupt_journal_is_refused_and_left_as_it_was(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "journal.sqlite"
    data = bytearray(_a_journal_with_rows(path))
    data[2 * 4096 : 2 * 4096 + 2000] = bytes(range(250)) * 8  # a table page overwritten
    path.write_bytes(bytes(data))
    assert _journal_refused(capsys, path) == DAMAGED
    assert path.read_bytes() == bytes(data)


def test_a_file_that_is_not_sqlite_is_refused_and_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes\n" * 1000, encoding="utf-8")
    reason = _journal_refused(capsys, path)
    assert reason == "not an SQLite database (another kind of file, or corrupt); arbtui leaves it untouched"
    assert path.read_text(encoding="utf-8") == "my notes\n" * 1000


FOREIGN = "not an arbtui journal but some other program's SQLite database"


@pytest.mark.parametrize(
    ("setup", "detail"),
    [
        (
            ["CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)", "INSERT INTO users VALUES (1, 'ann')"],
            "tables: users",
        ),
        (["PRAGMA application_id=1234", "CREATE TABLE t(x)"], "application_id 0x000004d2"),
        (["PRAGMA user_version=5"], "empty, user_version 5"),
        # Only a view: no tables, but not an empty database (it used to be taken for a new journal).
        (["CREATE VIEW v AS SELECT 1"], "no tables; view v"),
        (["PRAGMA journal_mode=WAL", "CREATE TABLE t(x)", "INSERT INTO t VALUES (1)"], "tables: t"),
    ],
    ids=["tables", "application_id", "user_version", "view-only", "wal"],
)
def test_a_foreign_sqlite_database_is_refused_and_byte_identical_afterwards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: list[str], detail: str
) -> None:
    folder = tmp_path / "other-app"
    folder.mkdir()
    path = folder / "app.db"
    conn = sqlite3.connect(path)
    for sql in setup:
        conn.execute(sql)
    conn.commit()
    conn.close()
    before = path.read_bytes()
    assert _journal_refused(capsys, path) == f"{FOREIGN} ({detail}); arbtui leaves it untouched"
    assert path.read_bytes() == before
    assert [p.name for p in folder.iterdir()] == ["app.db"]  # no -wal, -shm or -journal left beside it
    assert int.from_bytes(before[68:72], "big") != APPLICATION_ID


def test_an_empty_file_is_a_new_journal(tmp_path: Path) -> None:
    """What the code does now, on purpose: a zero-byte file (``touch journal.sqlite``) holds nothing to
    lose, so it becomes a new journal, stamped as arbtui's."""
    path = tmp_path / "journal.sqlite"
    path.touch()
    prepare_journal(path)
    assert int.from_bytes(path.read_bytes()[68:72], "big") == APPLICATION_ID


def test_journal_errors_name_the_path() -> None:
    with pytest.raises(JournalError) as info:
        prepare_journal(Path("/dev/null"))
    assert str(info.value).startswith("/dev/null: ")


# ------------------------------------------------------------------------------------------------
# Replay session, init, screenshots
# ------------------------------------------------------------------------------------------------


def test_a_session_path_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    folder.mkdir()
    proc = run_cli(tmp_path, "replay", str(folder), "--headless")
    assert proc.returncode == 2
    assert the_error(proc.stderr) == f"arbtui: {folder}: is a folder; expected a session file (.jsonl or .jsonl.gz)"


def test_a_session_folder_is_refused_by_the_console_replay_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "replay", str(tmp_path))
    assert code == 2
    assert err == f"arbtui: {tmp_path}: is a folder; expected a session file (.jsonl or .jsonl.gz)"


def test_init_into_a_read_only_folder_is_refused(tmp_path: Path, read_only: Path) -> None:
    """See the ``read_only`` fixture for how a folder is read-only to a root child."""
    target = read_only / "config.toml"
    proc = run_cli(tmp_path, "init", str(target))
    assert proc.returncode == 2
    line = the_error(proc.stderr)
    assert line.startswith(f"arbtui: cannot write {target}: ")
    if MODES_APPLY:
        assert line == f"arbtui: cannot write {target}: Permission denied"
    assert not target.exists()


def test_init_under_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    target = tmp_path / "file" / "config.toml"
    code, _, err = cli(capsys, "init", str(target))
    assert (code, err) == (2, f"arbtui: cannot write {target}: Not a directory")


def test_init_onto_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "init", str(tmp_path))
    assert code == 2
    assert err == f"arbtui: {tmp_path} is a folder; give the file to write, e.g. {tmp_path / 'config.toml'}"


def test_screenshots_into_a_read_only_folder_are_refused(tmp_path: Path, read_only: Path) -> None:
    """See the ``read_only`` fixture for how a folder is read-only to a root child."""
    proc = run_cli(tmp_path, "screenshots", str(read_only))
    assert proc.returncode == 2
    line = the_error(proc.stderr)
    assert line.startswith(f"arbtui: cannot write into {read_only}: ")
    if MODES_APPLY:
        assert line == f"arbtui: cannot write into {read_only}: Permission denied"
        assert list(read_only.iterdir()) == []


def test_screenshots_into_a_file_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "shots"
    target.write_text("x", encoding="utf-8")
    code, _, err = cli(capsys, "screenshots", str(target))
    assert (code, err) == (2, f"arbtui: {target} is a file; expected a folder for the screenshots")


# ------------------------------------------------------------------------------------------------
# Malformed keys: the variable is named, the value never shown
# ------------------------------------------------------------------------------------------------

KRAKEN_KEY = "kR4kenApiKeyValue0123456789"
BAD_CASES = [
    (
        "kraken api_secret not base64",
        {"ARBTUI_KRAKEN_API_KEY": KRAKEN_KEY, "ARBTUI_KRAKEN_API_SECRET": "n0t*base64!kraken-secret-VALUE"},
        "ARBTUI_KRAKEN_API_SECRET: not base64 (expected the private key as Kraken shows it) (venue kraken)",
    ),
    (
        "coinbase private_key not PEM",
        {
            "ARBTUI_COINBASE_KEY_NAME": "organizations/org-1/apiKeys/key-1",
            "ARBTUI_COINBASE_PRIVATE_KEY": "-----BEGIN EC PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n"
            "-----END EC PRIVATE KEY-----\n",
        },
        "ARBTUI_COINBASE_PRIVATE_KEY: ",
    ),
    (
        "polymarket private_key wrong length",
        {"ARBTUI_POLYMARKET_PRIVATE_KEY": "0x" + "5a" * 20},
        "ARBTUI_POLYMARKET_PRIVATE_KEY: expected 64 hex digits (32 bytes, 0x optional), got 40 characters "
        "(that is the length of an address, not of a key) (venue polymarket)",
    ),
    (
        "polymarket private_key not hex",
        {"ARBTUI_POLYMARKET_PRIVATE_KEY": "zz" * 32},
        "ARBTUI_POLYMARKET_PRIVATE_KEY: expected 64 hex digits (32 bytes, 0x optional): not hex (venue polymarket)",
    ),
]


@pytest.mark.parametrize(("env", "expected"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_a_malformed_key_names_its_variable_never_its_value(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    proc = run_cli(tmp_path, "run", "--config", str(real_venues_config(tmp_path)), *HEADLESS, env=env)
    assert proc.returncode == 2
    line = the_error(proc.stderr)
    assert line.startswith(f"arbtui: {expected}")
    for value in env.values():
        for piece in [value, *value.split("\n")]:
            if len(piece) >= 8:
                assert piece not in proc.stdout + proc.stderr


def test_a_malformed_key_in_the_secrets_file_names_its_table_and_field(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secret_value = "Z" * 31 + "!notbase64"
    secrets.write_text(f'[kraken]\napi_key = "{KRAKEN_KEY}"\napi_secret = "{secret_value}"\n', encoding="utf-8")
    secrets.chmod(0o600)
    proc = run_cli(tmp_path, "run", "--config", str(real_venues_config(tmp_path)), "--secrets", str(secrets), *HEADLESS)
    assert proc.returncode == 2
    assert the_error(proc.stderr) == (
        f"arbtui: {secrets}: [kraken] api_secret: not base64 (expected the private key as Kraken shows it) "
        "(venue kraken)"
    )
    assert secret_value not in proc.stdout + proc.stderr and KRAKEN_KEY not in proc.stdout + proc.stderr


def test_well_formed_keys_pass_the_checks() -> None:
    """The other side of the malformed cases: keys of the right shape load (so the refusals above are
    about the shape, not about any key at all). Loaded in a child: loading keys turns core dumps off."""
    env = {
        "ARBTUI_KRAKEN_API_KEY": KRAKEN_KEY,
        "ARBTUI_KRAKEN_API_SECRET": base64.b64encode(os.urandom(64)).decode(),
        "ARBTUI_COINBASE_KEY_NAME": "organizations/org-1/apiKeys/key-1",
        "ARBTUI_COINBASE_PRIVATE_KEY": coinbase_pem(),
        "ARBTUI_POLYMARKET_PRIVATE_KEY": "0x" + "11" * 32,
        "ARBTUI_POLYMARKET_API_KEY": "00000000-1111-2222-3333-444444444444",
        "ARBTUI_POLYMARKET_API_SECRET": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "ARBTUI_POLYMARKET_API_PASSPHRASE": os.urandom(16).hex(),
    }
    script = (
        "from arbtui.venues.secrets import load_credentials\n"
        "c = load_credentials({'kraken': 'kraken', 'coinbase': 'coinbase', 'polymarket': 'polymarket'})\n"
        "print(sorted(c))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ARBTUI_")} | env
    proc = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['coinbase', 'kraken', 'polymarket']"


# ------------------------------------------------------------------------------------------------
# --seed, --speed
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("before", [False, True], ids=["after-run", "before-run"])
@pytest.mark.parametrize("seed", [str(2**64), str(2**100), "-1"])
def test_a_seed_outside_64_bits_is_refused(capsys: pytest.CaptureFixture[str], seed: str, before: bool) -> None:
    argv = ["--seed", seed, "run", *HEADLESS] if before else ["run", "--seed", seed, *HEADLESS]
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.endswith(f"error: argument --seed: expected a whole number from 0 to 2**64-1 ({2**64 - 1}), got {seed}")


def test_the_largest_seed_is_taken(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "run", "--seed", str(2**64 - 1), *HEADLESS, "--json")
    assert (code, err) == (0, "")
    assert orjson.loads(out)["seed"] == 2**64 - 1


@pytest.mark.parametrize("speed", ["0", "-0", "-1", "nan", "inf", "-inf", "1e999", "fast"])
def test_a_speed_that_is_not_finite_and_positive_is_refused(capsys: pytest.CaptureFixture[str], speed: str) -> None:
    """--speed 0 used to play at 1x; every speed that is not a finite number > 0 is now refused."""
    code, out, err = cli(capsys, "replay", "missing.jsonl", "--headless", f"--speed={speed}")  # "-inf" is no flag
    assert code == 2 and out == ""
    assert err.startswith("arbtui replay: error: argument --speed: expected a ")
    assert err.endswith((f"got {speed}", f"got {speed!r}"))


# ------------------------------------------------------------------------------------------------
# Configuration magnitudes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ('max_notional = "1e999999999"', "risk.max_notional", "expected a finite decimal within +/-1e18"),
        ('max_notional = "-1e999999999"', "risk.max_notional", "expected a finite decimal within +/-1e18"),
        (
            'max_notional = "1e-999999999"',
            "risk.max_notional",
            "expected a finite decimal within +/-1e18 with at most 18",
        ),
        ("max_notional = 1e300", "risk.max_notional", "expected a finite decimal within +/-1e18"),
        ("max_notional = inf", "risk.max_notional", 'expected a decimal number (e.g. "0.0010"), got a float (inf)'),
        ('max_notional = "NaN"', "risk.max_notional", "expected a decimal number"),
        ("max_book_age_ms = 9223372036854775808", "risk.max_book_age_ms", "expected an integer within +/-"),
    ],
)
def test_check_config_refuses_magnitudes_that_would_overflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, key: str, expected: str
) -> None:
    data = default_config_data()
    del data["risk"][key.split(".")[1]]
    text = tomli_w.dumps(data)
    assert "\n[risk]\n" in text
    path = tmp_path / "big.toml"
    path.write_text(text.replace("\n[risk]\n", f"\n[risk]\n{toml}\n", 1), encoding="utf-8")
    code, _, err = cli(capsys, "check-config", str(path))
    assert code == 2
    assert err.startswith(f"{path}: {key}: {expected}")


def test_check_config_refuses_a_seed_over_64_bits_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    text = (ROOT / "config.toml").read_text(encoding="utf-8").replace("seed = 7 ", f"seed = {2**64} ", 1)
    assert f"seed = {2**64}" in text
    path.write_text(text, encoding="utf-8")
    proc = run_cli(tmp_path, "check-config", str(path))
    assert proc.returncode == 2
    assert the_error(proc.stderr) == f"{path}: seed: expected an integer <= {2**64 - 1}, got {2**64}"


# ------------------------------------------------------------------------------------------------
# Options before the command: honoured for run, refused for any other command
# ------------------------------------------------------------------------------------------------


def test_options_before_run_are_honoured(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--seed", "3", "run", *HEADLESS, "--json")
    assert (code, err) == (0, "")
    assert orjson.loads(out)["seed"] == 3


def test_config_before_run_is_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / "config.toml").read_text(encoding="utf-8").replace("seed = 7 ", "seed = -7 ", 1), "utf-8")
    proc = run_cli(tmp_path, "--config", str(bad), "run", *HEADLESS)
    assert proc.returncode == 2
    assert the_error(proc.stderr) == f"{bad}: seed: expected an integer >= 0, got -7"


def test_the_same_option_before_and_after_run(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--seed", "3", "run", "--seed", "4", *HEADLESS)
    assert (code, out) == (2, "")
    assert err == "arbtui: --seed given twice, before and after `run`, with different values"
    code, out, err = cli(capsys, "--seed", "3", "run", "--seed", "3", *HEADLESS, "--json")
    assert (code, err, orjson.loads(out)["seed"]) == (0, "", 3)


@pytest.mark.parametrize(
    ("argv", "names", "command"),
    [
        (["--config", "x.toml", "check-config", "y.toml"], "--config", "check-config"),
        (["--json", "replay", "s.jsonl", "--headless"], "--json", "replay"),
        (["--seed", "1", "--headless", "init", "c.toml"], "--seed, --headless", "init"),
        (["--record", "s.jsonl", "screenshots", "shots"], "--record", "screenshots"),
    ],
)
def test_run_options_before_another_command_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], names: str, command: str
) -> None:
    code, out, err = cli(capsys, *argv)
    assert (code, out) == (2, "")
    assert err == f"arbtui: {names} given before `{command}`: the run options go with `arbtui run` (or no command)"
    assert not any(p.name in ("c.toml", "shots", "s.jsonl") for p in tmp_path.iterdir())  # nothing was run


def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[kraken]\napi_key = "{KRAKEN_KEY}"\n', encoding="utf-8")
    secrets.chmod(0o644)
    code, out, err = cli(
        capsys, "run", "--config", str(real_venues_config(tmp_path)), "--secrets", str(secrets), *HEADLESS
    )
    assert code == 2
    assert err == (
        f"arbtui: {secrets}: the secrets file has mode 0644; it must be readable by you only (run: chmod 600 {secrets})"
    )
    assert KRAKEN_KEY not in out + err
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o644  # arbtui does not change it
