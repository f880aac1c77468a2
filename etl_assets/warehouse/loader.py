"""Staging tables ``stg_<name>`` and the upsert with change detection.

A page is written in the caller's transaction: the keys already present are read with
their hashes, and only new or changed rows are written, with ``ON CONFLICT`` as a safety
net so a key repeated across pages or a concurrent writer never raises. The result says
how many rows were inserted, updated and left unchanged.
"""

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from etl_assets.warehouse.engine import create_idempotently
from etl_assets.warehouse.records import PreparedPage

SQLITE_KEYS_PER_QUERY = 900


@dataclass(frozen=True)
class PageWrite:
    inserted: int
    updated: int
    unchanged: int


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
        record = "CAST(:record AS jsonb)" if self.dialect == "postgresql" else ":record"
        self._upsert = sa.text(
            f"INSERT INTO {self.qualified} "
            "(record_key, record, record_hash, first_loaded_at, last_loaded_at, etl_run_id) "
            f"VALUES (:key, {record}, :hash, :now, :now, :run_id) "
            "ON CONFLICT (record_key) DO UPDATE SET record = excluded.record, "
            "record_hash = excluded.record_hash, last_loaded_at = excluded.last_loaded_at, "
            "etl_run_id = excluded.etl_run_id "
            f"WHERE {self.qualified}.record_hash <> excluded.record_hash"
        )
        if self.dialect == "postgresql":
            self._existing = sa.text(
                f"SELECT record_key, record_hash FROM {self.qualified} WHERE record_key = ANY(:keys)"
            )
        else:
            self._existing = sa.text(
                f"SELECT record_key, record_hash FROM {self.qualified} WHERE record_key IN :keys"
            ).bindparams(sa.bindparam("keys", expanding=True))

    def ensure_table(self) -> None:
        create_idempotently(self.engine, lambda conn: self.table.create(conn, checkfirst=True))

    def _existing_hashes(self, conn: Connection, keys: list[str]) -> dict[str, str]:
        if self.dialect == "postgresql":
            return {key: digest for key, digest in conn.execute(self._existing, {"keys": keys})}
        found: dict[str, str] = {}
        for start in range(0, len(keys), SQLITE_KEYS_PER_QUERY):
            chunk = keys[start : start + SQLITE_KEYS_PER_QUERY]
            found.update((key, digest) for key, digest in conn.execute(self._existing, {"keys": chunk}))
        return found

    def write(self, conn: Connection, page: PreparedPage, *, run_id: int, now: datetime) -> PageWrite:
        """Upsert the page in ``conn``'s transaction and report what changed."""
        if not page.rows:
            return PageWrite(0, 0, 0)
        keys = list(page.rows)
        existing = self._existing_hashes(conn, keys)
        stamp: datetime | str = now if self.dialect == "postgresql" else now.replace(tzinfo=None).isoformat(" ")
        inserted = updated = 0
        batch = []
        for key, (text, digest) in page.rows.items():
            old = existing.get(key)
            if old == digest:
                continue
            if old is None:
                inserted += 1
            else:
                updated += 1
            batch.append({"key": key, "record": text, "hash": digest, "now": stamp, "run_id": run_id})
        if batch:
            conn.execute(self._upsert, batch)
        return PageWrite(inserted=inserted, updated=updated, unchanged=len(keys) - inserted - updated)
