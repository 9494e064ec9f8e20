"""Settings: one optional `arsip.toml`, overridden by `ARSIP_*` environment variables.

This is the only module that reads the environment. Every setting has a default that keeps
the whole service on loopback with its data under `./var`, so a fresh checkout runs with no
file at all. A bad value raises `SettingsError` naming the setting, which the CLI turns into
one line and exit status 2.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

from archiver.contentcheck.address import DaemonAddress
from archiver.languages import LANGUAGES

ENV_PREFIX = "ARSIP_"
MIB = 1024 * 1024


class SettingsError(ValueError):
    """A setting has a value Arsip cannot use; the message names the setting."""


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class HostPort:
    """A `host:port` pair, as given for the smarthost."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """Everything Arsip can be told. Field names are the setting names, lower-case."""

    data_dir: Path = Path("var")
    database_url: str = ""
    # A streaming replica of the PostgreSQL database that answers searches; empty: the primary
    database_replica_url: str = ""
    # The most PostgreSQL connections one process opens (5 stay open, the rest on demand)
    database_connections: int = 15
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    lmtp_port: int = 2424
    web_host: str = "127.0.0.1"
    web_port: int = 8080
    # Processes serving the web UI (8 threads each): one per core, up to four
    web_processes: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    hostname: str = "arsip.localdomain"
    domains: tuple[str, ...] = ()
    journal_addresses: tuple[str, ...] = ()
    journal_domains: Mapping[str, str] = field(default_factory=dict)
    # The clients that may hand in journal mail (addresses or networks); everyone else
    # reaches only list addresses and postmaster@
    journal_clients: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    # Logins that make any client a journal source through SMTP AUTH: login name -> sha256
    # (hex) of its secret, which `arsip journal-login` makes; empty: no AUTH
    journal_logins: Mapping[str, str] = field(default_factory=dict, repr=False)
    smarthost: HostPort | None = None
    max_message_size: int = 25 * MIB
    max_recipients: int = 1000
    # Seconds an SMTP/LMTP client may stay silent before its session is closed
    smtp_timeout: int = 300
    # Simultaneous SMTP/LMTP connections from one IP address; more get 421 and are closed
    max_connections_per_client: int = 100
    secret_key: str = field(default="", repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: str = "INFO"
    search_backend: str = ""
    # Where people reach the web UI, for links in mail (confirmations, one-click
    # unsubscribe); empty: http://WEB_HOST:WEB_PORT
    base_url: str = ""
    outgoing_connections: int = 16
    # The DNS server for DMARC look-ups (host:port); empty: the system's resolvers
    dns_server: HostPort | None = None
    # A file holding the 32-byte key that seals new blobs (AES-256-GCM); empty: no sealing.
    # Only the path is kept here, so the key never shows in a repr, a log or a pickle.
    blob_key_file: Path | None = None
    # When the retention sweep runs: a crontab line, in UTC
    retention_schedule: str = "30 2 * * *"
    # Content checks after the 250 (host:port or a Unix socket path; empty: off)
    spamd: DaemonAddress | None = None
    clamd: DaemonAddress | None = None
    # Seconds each daemon may take over one message before it counts as unavailable
    check_timeout: int = 10
    # The language of pages for browsers that ask for none Arsip has, and of list mail
    # where the list sets none: `en` (English) or `id` (Bahasa Indonesia)
    default_language: str = "en"
    # The Time-Stamp Authority (RFC 3161) that vouches for the seals' and the audit log's
    # times (an http(s) URL, which may carry a login); empty: nothing is timestamped
    tsa_url: str = field(default="", repr=False)
    # The CA bundle (PEM) that the TSA's certificate chains to, for checking its tokens
    tsa_ca: Path | None = None
    # Seconds the TSA may take to answer before the attempt counts as failed
    tsa_timeout: int = 10

    @property
    def public_url(self) -> str:
        """The base of links in outgoing mail, without a trailing slash."""
        return (self.base_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")

    def signing_key(self) -> str:
        """The key that signs sessions, tokens and VERP addresses: `secret_key`, or else a
        random key kept in the data directory, made by the first process that needs one.
        Made on demand, so that a command that only reads, run in the wrong directory,
        leaves no data directory behind."""
        return self.secret_key or _persistent_secret(self.data_dir.resolve())

    def blob_key(self) -> bytes | None:
        """The blob key read from `blob_key_file` (None without one); `SettingsError` when
        the file cannot be used. Read on demand so that no copy of it lives in settings."""
        return read_blob_key(self.blob_key_file) if self.blob_key_file else None

    @property
    def blob_dir(self) -> Path:
        """The content-addressed store of compressed raw messages."""
        return self.data_dir / "blobs"

    @property
    def index_dir(self) -> Path:
        """The whoosh search index."""
        return self.data_dir / "index"

    @property
    def outgoing_dir(self) -> Path:
        """The maildir that stands in for a smarthost when none is configured."""
        return self.data_dir / "outgoing"

    @property
    def productions_dir(self) -> Path:
        """Where the web UI writes productions (`case-NAME/` per case); the command line
        writes wherever it is told."""
        return self.data_dir / "productions"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected text")
    return value.strip()


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number = value if isinstance(value, int) else int(str(value).strip())
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}")
        return number

    return parse


def _port(value: Any) -> int:
    return _integer(0, 65535)(value)


def _list(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _domain(value: str) -> str:
    domain = value.strip().lower().rstrip(".")
    if not domain or "@" in domain or " " in domain or domain.startswith("."):
        raise ValueError(f"{value!r} is not a domain")
    return domain


def _domains(value: Any) -> tuple[str, ...]:
    return tuple(_domain(item) for item in _list(value))


def _addresses(value: Any) -> tuple[str, ...]:
    result = []
    for item in _list(value):
        local, at, domain = item.rpartition("@")
        if not at or not local:
            raise ValueError(f"{item!r} is not an email address")
        result.append(f"{local.lower()}@{_domain(domain)}")
    return tuple(result)


def _domain_map(value: Any) -> dict[str, str]:
    pairs = (
        value.items()
        if isinstance(value, dict)
        else (item.split("=", 1) if "=" in item else (item, "") for item in _list(value))
    )
    result = {}
    for archive, original in pairs:
        if not str(original).strip():
            raise ValueError(f"{archive!r} needs the form ARCHIVE=ORIGINAL")
        result[_domain(str(archive))] = _domain(str(original))
    return result


def _host_port(value: Any) -> HostPort | None:
    text = _text(value)
    if not text:
        return None
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        host, port = text, "25"
    return HostPort(host.strip("[]"), _port(port))


def _networks(value: Any) -> tuple[IPNetwork, ...]:
    """Comma-separated IP addresses or CIDR networks (a list in the file)."""
    networks = []
    for item in _list(value):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is no IP address or CIDR network") from None
    return tuple(networks)


def _logins(value: Any) -> dict[str, str]:
    """Comma-separated `NAME:SHA256` pairs, as `arsip journal-login` prints them."""
    logins = {}
    for item in _list(value):
        name, colon, digest = item.rpartition(":")
        if not colon or not name or "," in name or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("expected NAME:SHA256 pairs, as `arsip journal-login` prints them")
        logins[name] = digest
    return logins


def _daemon(value: Any) -> DaemonAddress | None:
    text = _text(value).strip()
    return DaemonAddress.parse(text) if text else None


def _path(value: Any) -> Path:
    return Path(_text(value)).expanduser()


def _optional_path(value: Any) -> Path | None:
    text = _text(value)
    return Path(text).expanduser() if text else None


def _tsa_url(value: Any) -> str:
    from urllib.parse import urlsplit

    url = _text(value)
    if url:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
    return url


def _log_level(value: Any) -> str:
    level = _text(value).upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def _crontab(value: Any) -> str:
    from apscheduler.triggers.cron import CronTrigger  # only when the setting is given

    line = " ".join(_text(value).split())
    try:
        CronTrigger.from_crontab(line, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"not a crontab line (minute hour day month weekday): {exc}") from exc
    return line


def _search_backend(value: Any) -> str:
    backend = _text(value).lower()
    if backend not in {"", "whoosh", "postgres"}:
        raise ValueError("must be whoosh or postgres")
    return backend


def _language(value: Any) -> str:
    code = _text(value).lower()
    if code not in LANGUAGES:
        raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
    return code


PARSERS: dict[str, Callable[[Any], Any]] = {
    "data_dir": _path,
    "database_url": _text,
    "database_replica_url": _text,
    "database_connections": _integer(1, 1000),
    "smtp_host": _text,
    "smtp_port": _port,
    "lmtp_port": _port,
    "web_host": _text,
    "web_port": _port,
    "web_processes": _integer(1, 64),
    "hostname": _text,
    "domains": _domains,
    "journal_addresses": _addresses,
    "journal_domains": _domain_map,
    "journal_clients": _networks,
    "journal_logins": _logins,
    "smarthost": _host_port,
    "max_message_size": _integer(1024, 2**31),
    "max_recipients": _integer(1, 100_000),
    "smtp_timeout": _integer(1, 3600),
    "max_connections_per_client": _integer(1, 10_000),
    "secret_key": _text,
    "tls_cert": _optional_path,
    "tls_key": _optional_path,
    "log_level": _log_level,
    "search_backend": _search_backend,
    "base_url": _text,
    "outgoing_connections": _integer(1, 100),
    "dns_server": _host_port,
    "blob_key_file": _optional_path,
    "retention_schedule": _crontab,
    "spamd": _daemon,
    "clamd": _daemon,
    "check_timeout": _integer(1, 600),
    "default_language": _language,
    "tsa_url": _tsa_url,
    "tsa_ca": _optional_path,
    "tsa_timeout": _integer(1, 120),
}

# Settings whose value a start-up error does not repeat: someone may paste a secret there
UNSHOWN = frozenset({"journal_logins", "tsa_url"})

BLOB_KEY_SIZE = 32


def read_blob_key(path: Path) -> bytes:
    """The key in `path`: exactly 32 raw bytes, or 64 hex digits, or 32 bytes in base64.

    Text forms may have surrounding white space (a trailing newline). Messages name the
    file and what is wrong with it, never its contents. A 32-byte file of printable
    characters is refused: it is a password or a truncated text key, not random bytes.
    """
    name = f"{ENV_PREFIX}BLOB_KEY_FILE: {path}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    if len(data) == BLOB_KEY_SIZE and not all(32 <= byte < 127 for byte in data):
        return data
    text = data.strip()
    key: bytes | None = None
    try:
        if len(text) == 2 * BLOB_KEY_SIZE:
            key = bytes.fromhex(text.decode("ascii"))
        else:
            key = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        key = None
    if key is None or len(key) != BLOB_KEY_SIZE:
        raise SettingsError(
            f"{name}: holds no {BLOB_KEY_SIZE}-byte key (give {BLOB_KEY_SIZE} random bytes, "
            f"{2 * BLOB_KEY_SIZE} hex digits or base64; the file has {len(data)} bytes)"
        )
    return key


def config_path(environ: Mapping[str, str] | None = None, config_file: Path | None = None) -> Path:
    """The settings file Arsip reads, whether or not it exists: `--config`, else
    `ARSIP_CONFIG`, else `arsip.toml` in the working directory (and where `arsip init`
    writes one)."""
    env = os.environ if environ is None else environ
    return config_file or Path(env.get("ARSIP_CONFIG", "arsip.toml"))


def settings_source(
    environ: Mapping[str, str] | None = None, config_file: Path | None = None
) -> str:
    """Where the settings came from, in words for an operator: the file read (and the
    `ARSIP_*` variables over it), or "environment only" when there is no file."""
    path = config_path(environ, config_file)
    if not path.exists():
        return "environment only"
    return f"{path.resolve()} (and ARSIP_* variables)"


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: Path | None = None
) -> Settings:
    """Read `arsip.toml` (or `ARSIP_CONFIG`) and the `ARSIP_*` variables into `Settings`.

    The environment wins over the file so that one file can serve several processes that
    differ only in a port or two.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = config_path(env, config_file)
    if path.exists():
        try:
            raw.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"{path}: {exc}") from exc
    elif "ARSIP_CONFIG" in env:
        raise SettingsError(f"ARSIP_CONFIG: {path} does not exist")
    for name in PARSERS:
        if ENV_PREFIX + name.upper() in env:
            raw[name] = env[ENV_PREFIX + name.upper()]
    unknown = set(raw) - set(PARSERS)
    if unknown:
        raise SettingsError(f"{path}: unknown setting {sorted(unknown)[0]!r}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            values[name] = PARSERS[name](value)
        except (ValueError, TypeError) as exc:
            shown = "" if name in UNSHOWN else f" {value!r}:"
            raise SettingsError(f"{ENV_PREFIX}{name.upper()}:{shown} {exc}") from exc
    settings = Settings(**values)
    _check_together(settings)
    return _with_derived_defaults(settings)


def _check_together(settings: Settings) -> None:
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise SettingsError("ARSIP_TLS_CERT and ARSIP_TLS_KEY must be given together")
    for name in ("tls_cert", "tls_key", "tsa_ca"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise SettingsError(f"{ENV_PREFIX}{name.upper()}: {path} is not a readable file")
    settings.blob_key()  # a missing, unreadable or malformed key file fails start-up
    ports = [settings.smtp_port, settings.lmtp_port, settings.web_port]
    busy = [port for port in ports if port and ports.count(port) > 1]
    if busy:
        raise SettingsError(
            f"ARSIP_SMTP_PORT, ARSIP_LMTP_PORT, ARSIP_WEB_PORT: {busy[0]} is used twice"
        )


def _with_derived_defaults(settings: Settings) -> Settings:
    """Fill what depends on other settings: the database URL and the search backend."""
    changes: dict[str, Any] = {}
    if not settings.database_url:
        changes["database_url"] = f"sqlite:///{settings.data_dir.resolve() / 'arsip.db'}"
    url = changes.get("database_url", settings.database_url)
    on_postgres = url.startswith("postgresql")
    if not settings.search_backend:
        changes["search_backend"] = "postgres" if on_postgres else "whoosh"
    elif settings.search_backend == "postgres" and not on_postgres:
        raise SettingsError("ARSIP_SEARCH_BACKEND: postgres needs ARSIP_DATABASE_URL on PostgreSQL")
    replica = settings.database_replica_url
    if replica and not (replica.startswith("postgresql") and on_postgres):
        raise SettingsError(
            "ARSIP_DATABASE_REPLICA_URL: a replica needs PostgreSQL, for it and for "
            "ARSIP_DATABASE_URL"
        )
    if not changes:
        return settings
    values = {f.name: getattr(settings, f.name) for f in fields(settings)}
    return Settings(**(values | changes))


@cache
def _persistent_secret(data_dir: Path) -> str:
    """A random key kept in the data directory, so sessions survive a restart (read once
    per process: list mail asks for it once per recipient)."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


@contextmanager
def new_settings_file(path: Path, values: Mapping[str, str]) -> Iterator[Settings]:
    """Write `values` (setting name -> text) as the settings file `path`, and yield the
    settings it gives with the environment's `ARSIP_*` over it.

    The file is written beside `path` and takes its place only when the block ends
    without an error: a value Arsip cannot use (`SettingsError`), or a database the caller
    cannot set up with these settings, leaves `path` as it was. JSON's string escapes
    are TOML's, so a value needs no other quoting.
    """
    lines = ["# Arsip settings; ARSIP_* environment variables override them.\n"]
    for name, value in values.items():
        if name not in PARSERS:
            raise SettingsError(f"unknown setting {name!r}")
        lines.append(f"{name} = {json.dumps(value, ensure_ascii=False)}\n")
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        draft.write_text("".join(lines), encoding="utf-8")
        yield load_settings(config_file=draft)
        draft.replace(path)
    finally:
        draft.unlink(missing_ok=True)
