"""Every timestamp a run stores is UTC: the ``dw_etl_runs`` columns, the checkpoint, the
attempts, the staging rows and what the API shows of them.

Values are read raw (on PostgreSQL converted to UTC by the server, on SQLite the stored text),
so a wall-clock time written where UTC belongs shows up as hours off the moment of the run when
the process zone (``TZ``) or the PostgreSQL session zone (``PGTZ``) is not UTC; see
``test_timezones.py``, which runs this module under three zones.
"""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from etl_assets.checkpoints import RunStatus, utcnow
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.errors import JobTimeoutError
from etl_assets.operations import run_detail
from etl_assets.warehouse import StagingLoader, prepare_page
from etl_assets_tests.support import extract, items_spec, simple_records

RUN_COLUMNS = ("started_at", "updated_at", "finished_at")
STAGING_COLUMNS = ("first_loaded_at", "last_loaded_at")


def raw_utc(warehouse, table: str, columns: tuple[str, ...]) -> list[tuple[datetime, ...]]:
    """The columns of every row as UTC instants, without SQLAlchemy's type conversions."""
    if warehouse.dialect == "postgresql":
        shown = ", ".join(f"to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')" for c in columns)
    else:
        shown = ", ".join(columns)
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {shown} FROM {warehouse.table(table)}")).all()
    return [tuple(datetime.fromisoformat(value).replace(tzinfo=timezone.utc) for value in row) for row in rows]


def column_types(warehouse, table: str) -> dict[str, str]:
    with warehouse.engine.connect() as conn:
        if warehouse.dialect == "postgresql":
            rows = conn.execute(
                sa.text("SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = :schema AND table_name = :table"),
                {"schema": warehouse.schema, "table": table},
            ).all()
        else:
            rows = [(r[1], r[2]) for r in conn.execute(sa.text(f"PRAGMA table_info({table})"))]
    return {name: kind for name, kind in rows if name.endswith("_at")}


def utc_iso(text: str, low: datetime, high: datetime) -> datetime:
    """A time from ``run_context``: ISO 8601 with the UTC offset, within the test's window."""
    assert text.endswith("+00:00"), text
    when = datetime.fromisoformat(text)
    assert low <= when <= high, (text, low, high)
    return when


@pytest.fixture
def source():
    with ServerThread(DemoSource(collections={"items": ListCollection(simple_records(30))})) as server:
        yield server


def test_every_timestamp_of_a_timed_out_then_resumed_run_is_utc(source, warehouse):
    start = utcnow()
    # The page at skip=20 hangs, so the run always times out there; the budget is what the
    # first two pages may take, and on a busy machine that can be more than a few hundred ms.
    source.source.add_fault(Fault(path="/items", skip=20, action="hang"))
    with pytest.raises(JobTimeoutError):
        extract(items_spec(source.url, limit=10), warehouse, timeout=2.0, interval=0)
    (stopped,) = warehouse.runs("items")
    middle = utcnow()
    checkpoint_time = utc_iso(stopped.run_context["checkpoint"]["last_checkpoint_time"], start, middle)
    assert stopped.checkpoint.last_checkpoint_time == checkpoint_time
    assert stopped.checkpoint.last_checkpoint_time.utcoffset() == timedelta(0)
    ((started, updated),) = raw_utc(warehouse, "dw_etl_runs", ("started_at", "updated_at"))
    assert start <= started <= updated <= middle and stopped.finished_at is None

    result = extract(items_spec(source.url, limit=10), warehouse, interval=0)
    end = utcnow()
    assert (result.run_id, result.records_fetched, result.resumed_from_skip) == (stopped.run_id, 10, 20)
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.SUCCESS
    ((started, updated, finished),) = raw_utc(warehouse, "dw_etl_runs", RUN_COLUMNS)
    assert (row.started_at, row.updated_at, row.finished_at) == (started, updated, finished)
    assert all(moment.tzinfo is timezone.utc for moment in (row.started_at, row.updated_at, row.finished_at))
    assert start <= started <= middle <= finished == updated <= end

    first, second = row.run_context["attempts"]
    assert (first["outcome"], second["outcome"]) == ("timeout", "success")
    moments = [utc_iso(a[k], start, end) for a in (first, second) for k in ("started_at", "ended_at")]
    assert moments == sorted(moments) and moments[1] <= middle <= moments[2]

    staged = raw_utc(warehouse, "stg_items", STAGING_COLUMNS)
    assert len(staged) == 30
    assert all(start <= loaded == last <= end for loaded, last in staged)

    detail = run_detail(row)
    assert [detail[k] for k in RUN_COLUMNS] == [started.isoformat(), updated.isoformat(), finished.isoformat()]
    assert all(detail[k].endswith("+00:00") for k in RUN_COLUMNS)

    if warehouse.dialect == "postgresql":
        stored = {c: "timestamp with time zone" for c in RUN_COLUMNS}
        staging = {c: "timestamp with time zone" for c in STAGING_COLUMNS}
    else:
        stored = {c: "DATETIME" for c in RUN_COLUMNS}
        staging = {c: "DATETIME" for c in STAGING_COLUMNS}
    assert (column_types(warehouse, "dw_etl_runs"), column_types(warehouse, "stg_items")) == (stored, staging)


def test_a_page_stamped_with_a_time_in_another_zone_is_stored_as_its_utc_instant(warehouse):
    """The run passes UTC; the loader must not depend on it (SQLite keeps only the wall clock)."""
    warehouse.store.ensure_schema()  # creates the test's PostgreSQL schema
    loader = StagingLoader(warehouse.engine, "stg_items", warehouse.schema)
    loader.ensure_table()
    page = prepare_page(simple_records(2), extract="items", primary_key=("id",), skip=0)
    tokyo = datetime(2026, 12, 4, 9, 30, tzinfo=ZoneInfo("Asia/Tokyo"))
    with warehouse.engine.begin() as conn:
        assert loader.write(conn, page, run_id=1, now=tokyo).inserted == 2
    expected = datetime(2026, 12, 4, 0, 30, tzinfo=timezone.utc)
    assert raw_utc(warehouse, "stg_items", STAGING_COLUMNS) == [(expected, expected)] * 2
    with warehouse.engine.begin() as conn, pytest.raises(ValueError) as raised:
        loader.write(conn, page, run_id=1, now=datetime(2026, 12, 4, 9, 30))
    assert str(raised.value) == "naive datetime given where UTC is required"
