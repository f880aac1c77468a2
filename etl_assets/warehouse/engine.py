"""Creating the warehouse engine, with the settings each backend needs."""

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl_assets.errors import SettingsError


def sqlite_file(url: sa.URL) -> Path | None:
    """The file a SQLite URL names (``~`` expanded, a ``file:`` URI decoded), or ``None`` for
    an in-memory database or another backend."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # a SQLite URI filename (``?uri=true``)
        location, _, query = database[len("file:"):].partition("?")
        if "mode=memory" in query.split("&") or location.startswith(":memory:"):
            return None
        if location.startswith("//"):
            location = "/" + location[2:].partition("/")[2]  # file://[host]/path
        database = unquote(location)
    return Path(database).expanduser()


def create_warehouse_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets its folder, WAL and a busy timeout.

    WAL lets the Dagster UI or a second process read while a run writes, and the busy
    timeout turns a brief lock into a wait instead of an error.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise SettingsError("ETL_DATABASE_URL is not a SQLAlchemy database URL") from None
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None and not parsed.database.startswith("file:"):
            # SQLite opens "~/x.db" literally; a user means their home, as everywhere else.
            parsed = parsed.set(database=str(path))
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = _create(parsed, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if parsed.get_backend_name() != "postgresql":
        raise SettingsError(
            f"ETL_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL, got a "
            f"{parsed.get_backend_name()!r} URL"
        )
    return _create(parsed, pool_pre_ping=True)


def _create(url: sa.URL, **options: Any) -> Engine:
    """``create_engine``, with what it refuses (a driver that is not installed, a query
    option of the wrong type) said as a setting error rather than a traceback. The URL
    itself is not repeated: it may hold a password."""
    try:
        return sa.create_engine(url, **options)
    except (ImportError, ValueError, TypeError, sa.exc.ArgumentError) as exc:
        raise SettingsError(f"ETL_DATABASE_URL cannot be used: {type(exc).__name__}: {str(exc)[:200]}") from None


def create_idempotently(engine: Engine, create: Callable[[Connection], None]) -> None:
    """Run ``CREATE ... IF NOT EXISTS``-style DDL that two processes may race to run.

    PostgreSQL's ``CREATE SCHEMA IF NOT EXISTS`` and SQLAlchemy's ``checkfirst`` both check
    and then create, so the loser of a race gets "already exists"; a second attempt then
    finds the object and does nothing.
    """
    for attempt in (1, 2):
        try:
            with engine.begin() as conn:
                create(conn)
            return
        except (sa.exc.IntegrityError, sa.exc.OperationalError, sa.exc.ProgrammingError):
            if attempt == 2:
                raise
