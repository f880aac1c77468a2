"""Staging tables ``stg_<name>`` and the upsert with change detection.

A page is written in the caller's transaction, so its checkpoint can commit with it. The
result says how many rows were inserted, updated and left unchanged; a key repeated across
pages or written by a concurrent writer never raises (``ON CONFLICT``), and an unchanged
row (same hash) is not rewritten.

On PostgreSQL a page goes in with one statement, one round trip, whatever its size: the
page's keys (a JSON array), records (canonical JSON, one per line) and hashes travel as three
``text`` parameters in binary format, as the bytes :func:`prepare_page` made, and one
set-based ``INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE hash differs`` splits them
back into rows and merges them; its ``RETURNING (xmax = 0)`` tells inserts from updates.
Row-by-row ``executemany`` spent most of a run's time in per-row protocol work (about
16,000 rows/s against about 170,000 for ``COPY``; see ``bench/RESULTS.md``). The statement
costs PostgreSQL about what ``COPY`` into the staging table would (most of it is parsing
jsonb), and it replaced ``COPY`` into a session temporary table followed by the merge: that
took four round trips where this takes one, and every round trip is a wait for the GIL on
the main thread while the parse worker holds it. A page of more than
:data:`MAX_PARAMETER_BYTES` still goes through ``COPY`` (a value is at most 1 GB). SQLite
has neither: it reads the page's existing hashes and upserts only new or changed rows.
"""

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import psycopg
import psycopg.adapt
import psycopg.postgres
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from etl_assets.warehouse.engine import create_idempotently
from etl_assets.warehouse.records import PreparedPage

SQLITE_KEYS_PER_QUERY = 900
PAGE_TABLE = "etl_assets_page"
"""The temporary table a page too large for one parameter is copied into; one per database
session, emptied on commit."""

MAX_PARAMETER_BYTES = 64 * 1024 * 1024
"""A page whose records take more than this as JSON is written through ``COPY`` (streamed)
instead of as one parameter (PostgreSQL holds a value of at most 1 GB, all in memory)."""


class _Utf8:
    """UTF-8 bytes sent to PostgreSQL as a ``text`` parameter, in binary format: exactly these
    bytes, with no decoding, re-encoding or escaping on the way."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Utf8Dumper(psycopg.adapt.Dumper):
    format = psycopg.pq.Format.BINARY
    oid = psycopg.postgres.types["text"].oid

    def dump(self, obj: _Utf8) -> bytes:
        return obj.data

_COPY_ESCAPES = ((b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\r", b"\\r"))


def _copy_field(value: bytes) -> bytes:
    """A value in ``COPY ... FROM STDIN`` text format (backslash, tab and line breaks escaped).

    Canonical JSON never holds a raw tab or line break (JSON escapes them), so records
    usually need only their backslashes doubled; keys may hold anything."""
    for raw, escaped in _COPY_ESCAPES:
        if raw in value:
            value = value.replace(raw, escaped)
    return value


@dataclass(frozen=True)
class PageWrite:
    inserted: int
    updated: int
    unchanged: int
    carried: int | None = None
    """Rows the :class:`CarriedStatement` changed, or ``None`` when it was not carried (the
    caller runs it itself)."""


@dataclass(frozen=True)
class CarriedStatement:
    """A data-modifying statement (``UPDATE ... RETURNING 1``) that a PostgreSQL page's merge
    runs in the same statement, as a ``WITH`` clause, instead of a round trip of its own.

    The checkpoint store uses it for the run row's per-page progress: a round trip was about
    1.5 ms of a 1,000-row page's 30 ms, and each is a wait for the GIL on the main thread.
    ``sql`` takes psycopg ``%(name)s`` parameters from ``params``; their names must not be
    ``now``, ``run_id``, ``keys``, ``records`` or ``hashes``, which the merge uses."""

    sql: str
    params: dict[str, Any]


def staging_table(metadata: sa.MetaData, name: str, schema: str | None) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("record_key", sa.Text, primary_key=True),
        sa.Column("record", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("record_hash", sa.String(32), nullable=False),
        sa.Column("first_loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("etl_run_id", sa.Integer, nullable=False),
        schema=schema,
    )


class StagingLoader:
    """Writes pages of one extract into its staging table."""

    def __init__(self, engine: Engine, table_name: str, schema: str | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.table = staging_table(sa.MetaData(), table_name, schema)
        quote = engine.dialect.identifier_preparer.quote
        self.qualified = f"{quote(schema)}.{quote(table_name)}" if schema else quote(table_name)
        self._upsert = sa.text(
            f"INSERT INTO {self.qualified} "
            "(record_key, record, record_hash, first_loaded_at, last_loaded_at, etl_run_id) "
            "VALUES (:key, :record, :hash, :now, :now, :run_id) "
            "ON CONFLICT (record_key) DO UPDATE SET record = excluded.record, "
            "record_hash = excluded.record_hash, last_loaded_at = excluded.last_loaded_at, "
            "etl_run_id = excluded.etl_run_id "
            f"WHERE {self.qualified}.record_hash <> excluded.record_hash"
        )
        self._create_page_table = (
            f"CREATE TEMP TABLE IF NOT EXISTS {PAGE_TABLE} "
            "(record_key text NOT NULL, record text NOT NULL, record_hash text NOT NULL) ON COMMIT DELETE ROWS"
        )
        self._copy = f"COPY {PAGE_TABLE} (record_key, record, record_hash) FROM STDIN"
        self._statements: dict[tuple[str, str | None], str] = {}
        self._existing = sa.text(
            f"SELECT record_key, record_hash FROM {self.qualified} WHERE record_key IN :keys"
        ).bindparams(sa.bindparam("keys", expanding=True))

    # Where a page's rows come from. The three parameters split back into rows in step: ROWS
    # FROM zips its functions. string_to_table (PostgreSQL 14) streams; older servers build an
    # array first. A page too large for parameters was copied into the page table.
    _SOURCES = {
        "page": "ROWS FROM (jsonb_array_elements_text(CAST(%(keys)b AS jsonb)), "
        "string_to_table(%(records)b, E'\\n'), string_to_table(%(hashes)b, E'\\n')) "
        "AS p(record_key, record, record_hash)",
        "page_before_14": "ROWS FROM (jsonb_array_elements_text(CAST(%(keys)b AS jsonb)), "
        "unnest(string_to_array(%(records)b, E'\\n')), unnest(string_to_array(%(hashes)b, E'\\n'))) "
        "AS p(record_key, record, record_hash)",
        "copied": PAGE_TABLE,
    }

    def _statement(self, source: str, carried: str | None) -> str:
        """The merge of the rows of ``_SOURCES[source]``, built once per shape: inserted and
        updated counts, the carried statement's row count, and ``synchronous_commit`` off for
        this transaction (``SET LOCAL``, without a round trip of its own).

        Safe without waiting for the WAL flush: the page and its checkpoint commit together,
        so a server crash can only lose both (the resume re-reads them), and the run's final
        success is written by a synchronous transaction after them."""
        statement = self._statements.get((source, carried))
        if statement is None:
            carry = f"carried AS ({carried}), " if carried else ""
            statement = (
                f"WITH {carry}written AS (INSERT INTO {self.qualified} AS t "
                "(record_key, record, record_hash, first_loaded_at, last_loaded_at, etl_run_id) "
                "SELECT record_key, CAST(record AS jsonb), record_hash, %(now)s, %(now)s, %(run_id)s "
                f"FROM {self._SOURCES[source]} "
                "ON CONFLICT (record_key) DO UPDATE SET record = excluded.record, "
                "record_hash = excluded.record_hash, last_loaded_at = excluded.last_loaded_at, "
                "etl_run_id = excluded.etl_run_id WHERE t.record_hash <> excluded.record_hash "
                "RETURNING (xmax = 0) AS inserted) "
                "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted), "
                f"{'(SELECT count(*) FROM carried)' if carried else 'NULL'}, "
                "set_config('synchronous_commit', 'off', true) FROM written"
            )
            self._statements[(source, carried)] = statement
        return statement

    def has_rows(self, conn: Connection) -> bool:
        return conn.execute(sa.text(f"SELECT 1 FROM {self.qualified} LIMIT 1")).first() is not None

    def ensure_table(self) -> None:
        create_idempotently(self.engine, lambda conn: self.table.create(conn, checkfirst=True))

    def _existing_hashes(self, conn: Connection, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(keys), SQLITE_KEYS_PER_QUERY):
            chunk = keys[start : start + SQLITE_KEYS_PER_QUERY]
            found.update((key, digest) for key, digest in conn.execute(self._existing, {"keys": chunk}))
        return found

    def write(
        self, conn: Connection, page: PreparedPage, *, run_id: int, now: datetime, carry: CarriedStatement | None = None
    ) -> PageWrite:
        """Upsert the page in ``conn``'s transaction and report what changed.

        ``now`` must be timezone-aware: PostgreSQL would read a naive one in the session's zone
        and SQLite stores UTC text, so a naive or non-UTC time would land hours off. ``carry``
        runs in the page's own statement on PostgreSQL; elsewhere, or for an empty page, it is
        left to the caller (``PageWrite.carried`` is ``None``)."""
        if now.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        now = now.astimezone(timezone.utc)
        if not page.rows:
            return PageWrite(0, 0, 0)
        if self.dialect == "postgresql":
            return self._merge_page_rows(conn, page, run_id=run_id, now=now, carry=carry)
        return self._upsert_changed(conn, page, run_id=run_id, now=now)

    def _merge_page_rows(
        self, conn: Connection, page: PreparedPage, *, run_id: int, now: datetime, carry: CarriedStatement | None
    ) -> PageWrite:
        raw = conn.connection.driver_connection
        copy = sum(len(data) + 1 for data, _ in page.rows.values()) > MAX_PARAMETER_BYTES
        params: dict[str, Any] = {"now": now, "run_id": run_id, **(carry.params if carry else {})}
        statement = self._copy
        try:
            with raw.cursor() as cursor:
                if copy:
                    self._copy_page(cursor, page)
                else:
                    cursor.adapters.register_dumper(_Utf8, _Utf8Dumper)
                    rows = page.rows.values()
                    params["keys"] = _Utf8(orjson.dumps(list(page.rows)))
                    # Canonical JSON never holds a raw line break (JSON escapes control
                    # characters), and a hash is hexadecimal.
                    params["records"] = _Utf8(b"\n".join([data for data, _ in rows]))
                    params["hashes"] = _Utf8("\n".join([digest for _, digest in rows]).encode("ascii"))
                source = "copied" if copy else "page" if raw.info.server_version >= 140000 else "page_before_14"
                statement = self._statement(source, carry.sql if carry else None)
                cursor.execute(statement, params)
                inserted, updated, carried, _ = cursor.fetchone()
        except psycopg.Error as exc:
            # The page goes through the driver's own cursor (binary parameters and COPY have no
            # SQLAlchemy API), so its errors arrive unwrapped. Wrapped as SQLAlchemy wraps every
            # other statement's, a value PostgreSQL refuses or a connection lost mid-page fails
            # the run as the warehouse refusing the page, naming extract and skip, not as an
            # unknown crash.
            raise sa.exc.DBAPIError.instance(statement, None, exc, psycopg.Error, dialect=conn.dialect) from exc
        return PageWrite(inserted, updated, len(page.rows) - inserted - updated, carried)

    def _copy_page(self, cursor: psycopg.Cursor[Any], page: PreparedPage) -> None:
        """``COPY`` a page too large for one parameter into the session's page table, row by
        row as it streams (``IF NOT EXISTS``: a rolled-back page may have taken the table with it)."""
        cursor.execute(self._create_page_table)
        with cursor.copy(self._copy) as copy:
            for key, (data, digest) in page.rows.items():
                copy.write(b"%s\t%s\t%s\n" % (_copy_field(key.encode("utf-8")), _copy_field(data), digest.encode()))

    def _upsert_changed(self, conn: Connection, page: PreparedPage, *, run_id: int, now: datetime) -> PageWrite:
        """SQLite: read the page's stored hashes, then upsert only new or changed rows."""
        keys = list(page.rows)
        existing = self._existing_hashes(conn, keys)
        stamp = now.replace(tzinfo=None).isoformat(" ")
        inserted = updated = 0
        batch = []
        for key, (data, digest) in page.rows.items():
            old = existing.get(key)
            if old == digest:
                continue
            if old is None:
                inserted += 1
            else:
                updated += 1
            batch.append({"key": key, "record": data.decode("utf-8"), "hash": digest, "now": stamp, "run_id": run_id})
        if batch:
            conn.execute(self._upsert, batch)
        return PageWrite(inserted=inserted, updated=updated, unchanged=len(keys) - inserted - updated)
