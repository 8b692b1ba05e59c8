"""Credentials: read from the environment or a secrets file, never from ``config.toml``.

- Environment: ``ARBTUI_<VENUE>_<FIELD>`` in upper case, e.g. ``ARBTUI_KRAKEN_API_SECRET``; the venue
  part is the venue's config name (``[venues.kraken]`` -> ``KRAKEN``).
- Secrets file (TOML, one table per venue name: ``[kraken] api_key = "..."``): given by ``--secrets``,
  by ``[trading] secrets_file``, or ``$XDG_CONFIG_HOME/arbtui/secrets.toml`` when it exists. It must
  not be readable or writable by group or others (mode 0600 or stricter): arbtui refuses it otherwise.
  The environment wins over the file.

A :class:`Secret` never prints its value (``str``, ``repr`` and f-strings show ``***``); code that
needs the value calls :meth:`Secret.reveal` at the point of use. :func:`redact` removes every loaded
secret value from a text (log lines, error messages, recordings).

Keys are checked when they are loaded (:func:`load_credentials` calls each venue module's
``check_credentials``): a secret that cannot be right (Kraken's not base64, Coinbase's not a PEM key,
Polymarket's not 32 bytes of hex) is an error naming the environment variable or the secrets-file
key, never the value, before anything connects. Once any key is loaded, core dumps are turned off for
the process (:func:`protect_process`): a core file would hold every key in memory.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import stat
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The fields each venue kind needs for trading. Market data needs none.
REQUIRED: dict[str, tuple[str, ...]] = {
    "kraken": ("api_key", "api_secret"),
    "coinbase": ("key_name", "private_key"),
    "polymarket": ("private_key", "api_key", "api_secret", "api_passphrase"),
}

_known_values: set[str] = set()
_PR_SET_DUMPABLE = 4  # <linux/prctl.h>

log = logging.getLogger(__name__)


class SecretsError(Exception):
    """A secrets file that cannot be used (its path and the reason are in the message)."""


class CredentialError(SecretsError):
    """Raised by a venue module's ``check_credentials``: the credential ``field`` cannot be right.
    ``reason`` never holds the value; :func:`load_credentials` adds where the field came from."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class Secret:
    """A credential value that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 6:
            _known_values.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True)
class Credentials:
    """One venue's credentials, by field name."""

    venue: str
    fields: Mapping[str, Secret]
    source: str  # "environment", the secrets file's path, or both (no values)
    origins: Mapping[str, str] = field(default_factory=dict)  # field -> where it came from (see ``where``)

    def where(self, name: str) -> str:
        """Where field ``name`` came from, for an error message: its environment variable, or
        ``<secrets file>: [venue] name``."""
        return self.origins.get(name) or f"ARBTUI_{_env(self.venue)}_{name.upper()}"

    def get(self, name: str) -> Secret | None:
        return self.fields.get(name)

    def require(self, name: str) -> Secret:
        value = self.fields.get(name)
        if value is None:
            env = f"ARBTUI_{_env(self.venue)}_{name.upper()}"
            raise SecretsError(f"{self.venue}: credential {name!r} is missing (set {env})")
        return value

    def complete(self, kind: str) -> bool:
        return all(f in self.fields for f in REQUIRED.get(kind, ()))


def _env(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.upper())


def default_secrets_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "arbtui" / "secrets.toml"


def read_secrets_file(path: Path) -> dict[str, dict[str, str]]:
    """The tables of a secrets file; refuses a file that group or others can read or write."""
    try:
        st = path.stat()
    except OSError as exc:
        raise SecretsError(f"{path}: cannot read the secrets file: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretsError(
            f"{path}: the secrets file has mode {stat.S_IMODE(st.st_mode):04o}; it must be readable by you only "
            f"(run: chmod 600 {path})"
        )
    if not path.is_file():
        raise SecretsError(f"{path}: the secrets file is not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SecretsError(f"{path}: cannot read the secrets file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1  # the line only: the bytes may be part of a key
        raise SecretsError(f"{path}: the secrets file is not UTF-8 text (line {line})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message names a line and column, never the value.
        raise SecretsError(f"{path}: not valid TOML: {exc}") from None
    out: dict[str, dict[str, str]] = {}
    for venue, table in data.items():
        if not isinstance(table, dict):
            raise SecretsError(f"{path}: [{venue}] must be a table of credential fields")
        for key, value in table.items():
            if not isinstance(value, str):
                raise SecretsError(f"{path}: {venue}.{key} must be a string")
        out[venue] = {str(k): v for k, v in table.items()}
    return out


def load_credentials(
    venues: Mapping[str, str],
    secrets_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Credentials]:
    """Credentials for each real venue (``name -> kind``) that has any; the environment wins.

    ``secrets_file`` None means the default path if it exists. A given file that is missing, unsafe or
    unreadable raises :class:`SecretsError`.
    """
    env = os.environ if environ is None else environ
    file_tables: dict[str, dict[str, str]] = {}
    path = secrets_file
    if path is None and default_secrets_path().exists():
        path = default_secrets_path()
    if path is not None:
        file_tables = read_secrets_file(path)
    out: dict[str, Credentials] = {}
    for name, kind in venues.items():
        fields: dict[str, Secret] = {}
        origins: dict[str, str] = {}
        sources: list[str] = []
        for fname, value in file_tables.get(name, {}).items():
            fields[fname] = Secret(value)
            origins[fname] = f"{path}: [{name}] {fname}"
            if str(path) not in sources:
                sources.append(str(path))
        names = set(REQUIRED.get(kind, ())) | set(file_tables.get(name, {}))
        for fname in sorted(names):
            variable = f"ARBTUI_{_env(name)}_{fname.upper()}"
            env_value = env.get(variable)
            if env_value:
                fields[fname] = Secret(env_value)
                origins[fname] = variable
                if "environment" not in sources:
                    sources.append("environment")
        if fields:
            out[name] = Credentials(name, fields, " + ".join(sources), origins)
    if out:
        protect_process()
    for name, creds in out.items():
        check_credentials(creds, venues[name])
    return out


def check_credentials(credentials: Credentials, kind: str) -> None:
    """Raise :class:`SecretsError` naming the variable (or secrets-file key) of the first credential
    that cannot be right, as the venue module ``arbtui.venues.<kind>`` judges it (its
    ``check_credentials``); the value is never in the message."""
    for fname, secret in credentials.fields.items():
        if not secret.reveal().strip():
            raise SecretsError(f"{credentials.where(fname)}: is empty (venue {credentials.venue})")
    check = getattr(importlib.import_module(f"arbtui.venues.{kind}"), "check_credentials", None)
    if check is None:
        return
    try:
        check(credentials)
    except CredentialError as exc:
        raise SecretsError(f"{credentials.where(exc.field)}: {exc.reason} (venue {credentials.venue})") from None


def is_token(value: str) -> bool:
    """True if ``value`` can travel as an HTTP header value or a JWT claim as it is: printable ASCII,
    no spaces or line breaks (an API key pasted with its newline is not)."""
    return bool(value) and value.isascii() and value.isprintable() and not any(c.isspace() for c in value)


def protect_process() -> None:
    """Keep loaded secrets out of core files: RLIMIT_CORE 0 (soft and hard, so nothing in the process
    can raise it again) and, on Linux, ``prctl(PR_SET_DUMPABLE, 0)``, which also stops other processes
    of the same user from attaching a debugger or reading ``/proc/PID/mem``. Called once keys are loaded."""
    try:
        import resource
    except ImportError:  # not a POSIX system: no core files to turn off
        return
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as exc:  # lowering a limit is always allowed; say so if it was not
        log.warning("could not turn core dumps off (RLIMIT_CORE): %s", exc)
    if sys.platform.startswith("linux"):
        try:
            if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as exc:
            log.warning("prctl(PR_SET_DUMPABLE, 0) is not available: %s", exc)


def redact(text: str) -> str:
    """``text`` with every loaded secret value replaced by ``***``."""
    for value in _known_values:
        if value in text:
            text = text.replace(value, "***")
    return text
