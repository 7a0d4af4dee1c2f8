"""``open_store``: pick the backend from ``CHOREO_STORE_URL``.

- unset or empty           → SQLite at ``CHOREO_STATE_DIR/<service>.sqlite3`` (directories created)
- ``sqlite:///rel/path.db`` → SQLite at that path (``sqlite:////abs/path.db`` for an absolute one; a path
  ending in ``/`` or naming a directory gets ``<service>.sqlite3`` inside it)
- ``postgresql://…``, ``postgres://…`` → PostgreSQL, tables shared by every service
- anything else → ``ConfigError``

Retention and the expire interval come from ``settings.store_retention`` (a ``timedelta``) and
``settings.store_expire_interval`` (seconds) when the settings have them, else the defaults (7 days, 60 s).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from choreo.config import Settings
from choreo.errors import ConfigError, InfrastructureError
from choreo.idempotency.base import IdempotencyStore
from choreo.idempotency.postgres import PostgresStore, redact_url
from choreo.idempotency.sqlite import SQLiteStore

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_SCHEME = "sqlite://"


def sqlite_path(url: str | None, state_dir: Path, service: str) -> Path:
    """Where the SQLite store of ``service`` lives, from ``CHOREO_STORE_URL`` (sqlite or unset)."""
    if not url:
        return Path(state_dir) / f"{service}.sqlite3"
    if not url.startswith(_SQLITE_SCHEME + "/") or url == _SQLITE_SCHEME + "/":
        raise ConfigError(f"CHOREO_STORE_URL {url!r} names no file: write sqlite:///relative/path.db "
                          "or sqlite:////absolute/path.db")
    raw = url[len(_SQLITE_SCHEME) + 1 :]  # SQLAlchemy's convention: the third slash ends the empty host
    path = Path(raw)
    if raw.endswith("/") or path.is_dir():
        path = path / f"{service}.sqlite3"
    return path


def _check_service(service: str) -> None:
    if not service or service in {".", ".."} or any(sep in service for sep in ("/", "\\", "\0")):
        raise ConfigError(f"service name {service!r} cannot name a store file: use letters, digits, . _ -")


def open_store(settings: Settings, service: str, **options: Any) -> IdempotencyStore:
    """The idempotency store for ``service``; ``options`` go to the store's constructor (e.g. ``clock``)."""
    _check_service(service)
    options.setdefault("retention", settings.store_retention)
    options.setdefault("expire_interval", settings.store_expire_interval)
    if isinstance(options["retention"], int | float):
        options["retention"] = timedelta(seconds=options["retention"])
    url = (settings.store_url or "").strip()
    if url.startswith(_POSTGRES_SCHEMES):
        return PostgresStore(url, service=service, **options)
    if url and not url.startswith(_SQLITE_SCHEME):
        scheme = url.partition("://")[0] if "://" in url else "(none)"
        raise ConfigError(
            f"CHOREO_STORE_URL {redact_url(url)!r} has an unsupported scheme {scheme!r}: use postgresql://…, "
            "postgres://…, sqlite:///path, or leave it unset for SQLite under CHOREO_STATE_DIR"
        )
    path = sqlite_path(url, settings.state_dir, service)
    if str(path) != ":memory:":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InfrastructureError(f"cannot create the state directory {path.parent}: {exc}") from exc
    return SQLiteStore(path, service=service, **options)
