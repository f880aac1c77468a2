"""All reads and writes of ``dw_etl_runs``.

Every write takes a SQLAlchemy ``Connection`` inside a transaction the caller owns, so a
page of data and the checkpoint that covers it commit together: a checkpoint can never
point past data that is not stored. The table is created when missing and never dropped
or rewritten.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from etl_assets.checkpoints.models import Checkpoint, RunRecord, RunStatus, utcnow
from etl_assets.errors import CorruptRunError
from etl_assets.jsoncodec import dumps
from etl_assets.settings import validate_schema
from etl_assets.sources.partitions import partition_key
from etl_assets.warehouse.engine import create_idempotently
from etl_assets.warehouse.loader import CarriedStatement

RUNS_TABLE = "dw_etl_runs"
ANY_OWNER: Any = object()
"""Pass as ``owner`` to write a row whoever holds it (retiring rows, the sensor)."""
RESUMABLE = (RunStatus.RUNNING.value, RunStatus.FAILED.value)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, also on SQLite, which has no time zones."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def runs_table(metadata: sa.MetaData, schema: str | None) -> sa.Table:
    return sa.Table(
        RUNS_TABLE,
        metadata,
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("records_loaded", sa.BigInteger, nullable=False, default=0),
        sa.Column("error_message", sa.Text),
        sa.Column("dagster_run_id", sa.String(64)),
        sa.Column("run_context", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Index("ix_dw_etl_runs_job_status", "job_name", "status"),
        schema=schema,
    )


class CheckpointStore:
    """Reads and writes ``dw_etl_runs`` rows on one engine."""

    def __init__(self, engine: Engine, schema: str | None = None) -> None:
        if schema is not None:
            # It goes into CREATE SCHEMA as an identifier: checked here too, not only by callers.
            validate_schema(schema, what="schema")
        self.engine = engine
        self.schema = schema
        self.table = runs_table(sa.MetaData(), schema)
        self._ready = False
        column = self.table.c
        self._touch = (
            self.table.update()
            .where(column.run_id == sa.bindparam("b_run_id"), column.dagster_run_id == sa.bindparam("b_owner"))
            .values(records_loaded=sa.bindparam("b_records"), updated_at=sa.bindparam("b_now"))
        )
        self._carried_sql: dict[str, str] = {}
        self._checkpoint = (
            self.table.update()
            .where(column.run_id == sa.bindparam("b_run_id"), column.dagster_run_id == sa.bindparam("b_owner"))
            .values(
                run_context=sa.bindparam("b_context", type_=column.run_context.type),
                records_loaded=sa.bindparam("b_records"),
                status=sa.bindparam("b_status"),
                updated_at=sa.bindparam("b_now"),
                error_message=sa.bindparam("b_error"),
            )
        )

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def ensure_schema(self) -> None:
        """Create the schema and the table when missing; never alter an existing one."""
        if self._ready:
            return

        def create(conn: Connection) -> None:
            if self.schema and conn.dialect.name == "postgresql":
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            self.table.create(conn, checkfirst=True)

        create_idempotently(self.engine, create)
        self._ready = True

    def exists(self) -> bool:
        """Whether the table is there, created by nothing here: reading rows (``runs list``,
        the API) must not leave a schema and a table behind where a mistyped
        ``ETL_WAREHOUSE_SCHEMA`` or URL pointed."""
        if self._ready:
            return True
        with self.engine.connect() as conn:
            self._ready = sa.inspect(conn).has_table(RUNS_TABLE, schema=self.schema)
        return self._ready

    def lock_extract(self, conn: Connection, job_name: str) -> None:
        """Serialize claims of one extract until ``conn``'s transaction ends.

        Without it two runs that start together both find no row to resume and both insert
        one, and then extract the same data side by side. PostgreSQL takes a transaction
        advisory lock on the extract; SQLite takes its database write lock with a write
        that changes nothing (the busy timeout makes the second run wait, not fail).
        """
        if conn.dialect.name == "postgresql":
            digest = hashlib.blake2b(f"{self.schema}.{RUNS_TABLE}:{job_name}".encode(), digest_size=8).digest()
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": int.from_bytes(digest, "big", signed=True)})
        else:
            conn.execute(self.table.update().where(sa.false()).values(job_name=self.table.c.job_name))

    def _record(self, row: sa.Row[Any]) -> RunRecord:
        data = row._mapping
        run_id = data["run_id"]
        try:
            status = RunStatus(data["status"])
        except ValueError:
            raise CorruptRunError(
                f"dw_etl_runs run {run_id}: its status {str(data['status'])[:40]!r} is not one of "
                f"{', '.join(s.value for s in RunStatus)}"
            ) from None
        context = data["run_context"]
        if context is not None and not isinstance(context, dict):
            raise CorruptRunError(f"dw_etl_runs run {run_id}: its run_context is {type(context).__name__}, not an object")
        return RunRecord(
            run_id=run_id,
            job_name=data["job_name"],
            status=status,
            started_at=data["started_at"],
            updated_at=data["updated_at"],
            finished_at=data["finished_at"],
            records_loaded=int(data["records_loaded"] or 0),
            error_message=data["error_message"],
            dagster_run_id=data["dagster_run_id"],
            run_context=dict(context or {}),
        )

    def _fetch(self, conn: Connection, query: Any) -> list[RunRecord]:
        """The rows of ``query``; a value SQLite cannot read back (a time or JSON edited by
        hand) fails as :class:`CorruptRunError`, not as a bare ``ValueError``."""
        try:
            rows = conn.execute(query).all()
        except ValueError as exc:
            raise CorruptRunError(f"a dw_etl_runs row cannot be read: {type(exc).__name__}: {str(exc)[:200]}") from None
        return [self._record(row) for row in rows]

    def get(self, run_id: int, conn: Connection | None = None) -> RunRecord | None:
        query = sa.select(self.table).where(self.table.c.run_id == run_id)
        if conn is not None:
            rows = self._fetch(conn, query)
        else:
            with self.engine.connect() as own:
                rows = self._fetch(own, query)
        return rows[0] if rows else None

    def list_runs(self, job_name: str | None = None, limit: int = 100) -> list[RunRecord]:
        query = sa.select(self.table).order_by(self.table.c.run_id.desc()).limit(limit)
        if job_name is not None:
            query = query.where(self.table.c.job_name == job_name)
        with self.engine.connect() as conn:
            return self._fetch(conn, query)

    def last_success(self, job_name: str) -> RunRecord | None:
        """The extract's newest successful row (an incremental run's watermark comes from it)."""
        query = (
            sa.select(self.table)
            .where(self.table.c.job_name == job_name, self.table.c.status == RunStatus.SUCCESS.value)
            .order_by(self.table.c.run_id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            rows = self._fetch(conn, query)
        return rows[0] if rows else None

    def unfinished(self, conn: Connection, job_name: str) -> list[RunRecord]:
        """Rows of ``job_name`` that are ``running`` or ``failed`` with a checkpoint, or
        ``running`` without one (an abandoned start), newest first."""
        query = (
            sa.select(self.table)
            .where(self.table.c.job_name == job_name, self.table.c.status.in_(RESUMABLE))
            .order_by(self.table.c.run_id.desc())
        )
        rows = self._fetch(conn, query)
        return [r for r in rows if r.run_context.get("checkpoint") is not None or r.status is RunStatus.RUNNING]

    def latest_resumable(self) -> list[RunRecord]:
        """The newest ``running``/``failed`` row with a checkpoint of each extract (of each
        partition, for a partitioned one).

        Only the newest: a run always resumes its extract's newest row and retires the
        others, so relaunching an older one would supersede newer progress. The checkpoint is
        not parsed here, so one corrupt row cannot hide the others.
        """
        query = (
            sa.select(self.table)
            .where(self.table.c.status.in_(RESUMABLE))
            .order_by(self.table.c.run_id.desc())
        )
        newest: dict[tuple[str, Any], RunRecord] = {}
        with self.engine.connect() as conn:
            for record in self._fetch(conn, query):
                # Each partition of a partitioned extract is a logical run of its own.
                key = (record.job_name, partition_key(record.parameters))
                if key in newest:
                    continue
                newest[key] = record
        return [r for r in newest.values() if r.run_context.get("checkpoint")]

    def write_context(
        self,
        conn: Connection,
        run_id: int,
        run_context: dict[str, Any],
        *,
        owner: str | None,
        status: RunStatus | None = None,
        error_message: str | None = None,
    ) -> bool:
        """Replace ``run_context`` (and maybe close the row) unless another run took it."""
        values: dict[str, Any] = {"run_context": run_context, "updated_at": utcnow()}
        if status is not None:
            values["status"] = status.value
            values["error_message"] = error_message
            if status is not RunStatus.RUNNING:
                values["finished_at"] = values["updated_at"]
        return self._update(conn, run_id, owner, values)

    def create(
        self, conn: Connection, job_name: str, run_context: dict[str, Any], dagster_run_id: str | None
    ) -> RunRecord:
        now = utcnow()
        result = conn.execute(
            self.table.insert()
            .values(
                job_name=job_name,
                status=RunStatus.RUNNING.value,
                started_at=now,
                updated_at=now,
                records_loaded=0,
                dagster_run_id=dagster_run_id,
                run_context=run_context,
            )
            .returning(self.table.c.run_id)
        )
        run_id = result.scalar_one()
        record = self.get(run_id, conn)
        assert record is not None
        return record

    def claim(
        self,
        conn: Connection,
        record: RunRecord,
        dagster_run_id: str | None,
        run_context: dict[str, Any],
        records_loaded: int,
    ) -> bool:
        """Take over ``record`` for this Dagster run; False when another run took it first.

        A compare-and-set on ``dagster_run_id``: of two runs that read the same row, only
        the first to write wins. ``records_loaded`` goes back to the checkpoint's count: pages
        written after the last checkpoint are fetched again, and the count must match the
        checkpoint for the run's end to tell whether its own page commits all survived.
        """
        result = conn.execute(
            self.table.update()
            .where(
                self.table.c.run_id == record.run_id,
                self._owned_by(record.dagster_run_id),
                self.table.c.status.in_(RESUMABLE),
            )
            .values(
                dagster_run_id=dagster_run_id,
                status=RunStatus.RUNNING.value,
                updated_at=utcnow(),
                finished_at=None,
                error_message=None,
                run_context=run_context,
                records_loaded=records_loaded,
            )
        )
        return result.rowcount == 1

    def save(
        self,
        conn: Connection,
        run_id: int,
        *,
        run_context: dict[str, Any],
        records_loaded: int,
        status: RunStatus = RunStatus.RUNNING,
        error_message: str | None = None,
        finished: bool = False,
        owner: str | None = ANY_OWNER,
    ) -> bool:
        """Write the row's progress; the caller's transaction decides when it lands.

        With ``owner`` the write is fenced: it only happens while ``dagster_run_id`` is still
        ``owner``, so a run that lost the row to another can never move its checkpoint.
        Returns whether the row was written.
        """
        now = utcnow()
        if isinstance(owner, str) and not finished:
            # A run's checkpoints: built once, as a construct per save cost about what it did.
            result = conn.execute(self._checkpoint, {
                "b_run_id": run_id, "b_owner": owner, "b_context": run_context, "b_records": records_loaded,
                "b_status": status.value, "b_now": now, "b_error": error_message,
            })
            return result.rowcount == 1
        values: dict[str, Any] = {
            "run_context": run_context,
            "records_loaded": records_loaded,
            "status": status.value,
            "updated_at": now,
            "error_message": error_message,
        }
        if finished:
            values["finished_at"] = now
        return self._update(conn, run_id, owner, values)

    def touch(self, conn: Connection, run_id: int, *, records_loaded: int, owner: str | None) -> bool:
        """Record progress without a checkpoint (fenced like :meth:`save`).

        Runs once per page, so the statement is built once: building an ``update()`` construct
        for every page cost about as much as executing it."""
        if owner is None:
            return self._update(conn, run_id, owner, {"records_loaded": records_loaded, "updated_at": utcnow()})
        result = conn.execute(
            self._touch, {"b_run_id": run_id, "b_owner": owner, "b_records": records_loaded, "b_now": utcnow()}
        )
        return result.rowcount == 1

    def carried_touch(self, run_id: int, *, records_loaded: int, owner: str | None, now: datetime) -> CarriedStatement | None:
        """:meth:`touch` as a statement a PostgreSQL page's merge carries (see
        :class:`CarriedStatement`); ``None`` where it cannot be carried, and the caller touches."""
        return self._carried(run_id, owner, "records_loaded = %(c_records)s", {"c_records": records_loaded}, now)

    def carried_save(
        self, run_id: int, *, run_context: dict[str, Any], records_loaded: int, owner: str | None, now: datetime
    ) -> CarriedStatement | None:
        """:meth:`save` of a running row's checkpoint, carried like :meth:`carried_touch`: with
        a checkpoint on every page, its round trip was most of what checkpoints cost."""
        return self._carried(
            run_id, owner,
            "run_context = CAST(%(c_context)s AS jsonb), records_loaded = %(c_records)s, "
            "status = %(c_status)s, error_message = NULL",
            {"c_context": dumps(run_context), "c_records": records_loaded, "c_status": RunStatus.RUNNING.value},
            now,
        )

    def _carried(
        self, run_id: int, owner: str | None, assignments: str, params: dict[str, Any], now: datetime
    ) -> CarriedStatement | None:
        if owner is None or self.engine.dialect.name != "postgresql":
            return None
        quote = self.engine.dialect.identifier_preparer.quote
        table = f"{quote(self.schema)}.{quote(RUNS_TABLE)}" if self.schema else quote(RUNS_TABLE)
        sql = self._carried_sql.setdefault(assignments, (
            f"UPDATE {table} SET {assignments}, updated_at = %(c_now)s "
            "WHERE run_id = %(c_run_id)s AND dagster_run_id = %(c_owner)s RETURNING 1"
        ))
        return CarriedStatement(sql, {**params, "c_now": now, "c_run_id": run_id, "c_owner": owner})

    def heartbeat(self, conn: Connection, run_id: int, owner: str | None) -> bool:
        """Renew a running row's lease (its ``updated_at``) while ``owner`` still holds it."""
        query = (
            self.table.update()
            .where(self.table.c.run_id == run_id, self._owned_by(owner), self.table.c.status == RunStatus.RUNNING.value)
            .values(updated_at=utcnow())
        )
        return conn.execute(query).rowcount == 1

    def _owned_by(self, owner: str | None) -> Any:
        column = self.table.c.dagster_run_id
        return column.is_(None) if owner is None else column == owner

    def _update(self, conn: Connection, run_id: int, owner: Any, values: dict[str, Any]) -> bool:
        query = self.table.update().where(self.table.c.run_id == run_id)
        if owner is not ANY_OWNER:
            query = query.where(self._owned_by(owner))
        return conn.execute(query.values(**values)).rowcount == 1

    def checkpoint(self, run_id: int) -> Checkpoint | None:
        record = self.get(run_id)
        return record.checkpoint if record is not None else None
