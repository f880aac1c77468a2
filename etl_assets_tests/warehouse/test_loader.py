"""The staging loader on both backends: inserted / updated / unchanged, and values that
``COPY``'s text format must escape (backslashes, tabs, line breaks, its ``\\N`` null marker),
on PostgreSQL through both of its paths (one statement, and ``COPY`` for a page too large
for one parameter)."""

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from etl_assets.checkpoints import RunStatus
from etl_assets.warehouse import StagingLoader, loader as loader_module, prepare_page

AWKWARD = [
    {"id": "a\\b", "name": "back\\slash"},
    {"id": "tab\tkey", "name": "line\nbreak\r\n"},
    {"id": "\\N", "name": "\\N"},
    {"id": "\\.", "name": "end \\. marker"},
    {"id": "Ünïcødé ✓", "name": "名前 \u2028 \"quoted\""},
    {"id": 12345678901234567890123, "name": None},
]


def load(warehouse, records, run_id=1):
    warehouse.store.ensure_schema()
    loader = StagingLoader(warehouse.engine, "stg_items", warehouse.schema)
    loader.ensure_table()
    page = prepare_page(records, extract="items", primary_key=("id",), skip=0)
    with warehouse.engine.begin() as conn:
        return loader.write(conn, page, run_id=run_id, now=datetime(2026, 12, 4, tzinfo=UTC))


def stored(warehouse):
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT record_key, record, etl_run_id FROM {warehouse.table('stg_items')}"))
        return {key: (json.loads(rec) if isinstance(rec, str) else rec, run) for key, rec, run in rows}


def test_awkward_keys_and_values_round_trip(warehouse):
    write = load(warehouse, AWKWARD)
    assert (write.inserted, write.updated, write.unchanged) == (6, 0, 0)
    rows = stored(warehouse)
    assert sorted(rows) == sorted(str(r["id"]) for r in AWKWARD)
    for record in AWKWARD:
        assert rows[str(record["id"])] == (record, 1)


def test_unchanged_rows_are_not_rewritten_and_changes_are_counted(warehouse):
    load(warehouse, AWKWARD, run_id=1)
    again = load(warehouse, AWKWARD, run_id=2)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6)
    assert {run for _, run in stored(warehouse).values()} == {1}
    changed = [dict(r) for r in AWKWARD]
    changed[2]["name"] = "now different"
    changed.append({"id": 7, "name": "new"})
    third = load(warehouse, changed, run_id=3)
    assert (third.inserted, third.updated, third.unchanged) == (1, 1, 5)
    rows = stored(warehouse)
    assert rows["\\N"] == ({"id": "\\N", "name": "now different"}, 3)
    assert rows["7"] == ({"id": 7, "name": "new"}, 3)
    assert rows["a\\b"][1] == 1


@pytest.fixture(params=["one statement", "copy"])
def postgres_path(request, postgres_warehouse, monkeypatch):
    """The PostgreSQL warehouse, writing pages as one statement or through ``COPY`` (the path
    of a page larger than ``MAX_PARAMETER_BYTES``, here made small enough for every page)."""
    if request.param == "copy":
        monkeypatch.setattr(loader_module, "MAX_PARAMETER_BYTES", 10)
    return postgres_warehouse


def test_both_postgresql_paths_store_awkward_values_and_count_exactly(postgres_path):
    assert (load(postgres_path, AWKWARD).inserted, load(postgres_path, AWKWARD, run_id=2).unchanged) == (6, 6)
    changed = [dict(r) for r in AWKWARD]
    changed[0]["name"] = "changed \\ again\ttab"
    changed.append({"id": "new\nline", "name": "x"})
    third = load(postgres_path, changed, run_id=3)
    assert (third.inserted, third.updated, third.unchanged) == (1, 1, 5)
    rows = stored(postgres_path)
    assert rows == {str(r["id"]): (r, 3 if r in (changed[0], changed[-1]) else 1) for r in changed}


def test_a_page_commits_without_waiting_for_the_wal_flush_and_only_that_transaction(postgres_path):
    """``synchronous_commit`` is off for the page's transaction (it commits with its checkpoint,
    so a crash loses both or neither), and back to the server's setting after it: the run's
    end, written on a connection the page's may be returned to, is still synchronous."""
    postgres_path.store.ensure_schema()
    loader = StagingLoader(postgres_path.engine, "stg_items", postgres_path.schema)
    loader.ensure_table()
    page = prepare_page(AWKWARD, extract="items", primary_key=("id",), skip=0)
    with postgres_path.engine.connect() as conn:
        before = conn.exec_driver_sql("SHOW synchronous_commit").scalar_one()
        conn.commit()
        with conn.begin():
            loader.write(conn, page, run_id=1, now=datetime(2026, 12, 4, tzinfo=UTC))
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "off"
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == before != "off"


def test_a_page_postgresql_refuses_rolls_back_and_the_next_page_on_the_connection_writes(postgres_path):
    postgres_path.store.ensure_schema()
    loader = StagingLoader(postgres_path.engine, "stg_items", postgres_path.schema)
    loader.ensure_table()
    bad = prepare_page([{"id": 1, "n": "x" * 10}, {"id": 2}], extract="items", primary_key=("id",), skip=0)
    bad.rows["1"] = (b'{"not": json', bad.rows["1"][1])  # past every check, refused by jsonb
    good = prepare_page(AWKWARD, extract="items", primary_key=("id",), skip=0)
    now = datetime(2026, 12, 4, tzinfo=UTC)
    with postgres_path.engine.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError, match="invalid input syntax for type json"):
            with conn.begin():
                loader.write(conn, bad, run_id=1, now=now)
        with conn.begin():
            assert loader.write(conn, good, run_id=1, now=now).inserted == 6
    assert sorted(stored(postgres_path)) == sorted(str(r["id"]) for r in AWKWARD)


def test_the_run_rows_progress_rides_in_the_pages_statement_on_both_postgresql_paths(postgres_path):
    store = postgres_path.store
    store.ensure_schema()
    with store.transaction() as conn:
        record = store.create(conn, "items", {}, "me")
    loader = StagingLoader(postgres_path.engine, "stg_items", postgres_path.schema)
    loader.ensure_table()
    page = prepare_page(AWKWARD, extract="items", primary_key=("id",), skip=0)
    now = datetime(2026, 12, 4, 10, 30, tzinfo=UTC)
    mine = store.carried_touch(record.run_id, records_loaded=6, owner="me", now=now)
    theirs = store.carried_touch(record.run_id, records_loaded=99, owner="someone else", now=now)
    with postgres_path.engine.begin() as conn:
        first = loader.write(conn, page, run_id=record.run_id, now=now, carry=mine)
        second = loader.write(conn, page, run_id=record.run_id, now=now, carry=theirs)
    assert (first.inserted, first.carried, second.unchanged, second.carried) == (6, 1, 6, 0)
    row = store.get(record.run_id)
    assert (row.records_loaded, row.updated_at, row.dagster_run_id) == (6, now, "me")


def test_sqlite_leaves_the_progress_update_to_the_caller(sqlite_warehouse):
    sqlite_warehouse.store.ensure_schema()
    assert sqlite_warehouse.store.carried_touch(1, records_loaded=6, owner="me", now=datetime(2026, 12, 4, tzinfo=UTC)) is None
    assert load(sqlite_warehouse, AWKWARD).carried is None


def test_a_checkpoint_rides_in_the_pages_statement_too(postgres_path):
    store = postgres_path.store
    store.ensure_schema()
    with store.transaction() as conn:
        record = store.create(conn, "items", {"parameters": {"p": 1}}, "me")
    loader = StagingLoader(postgres_path.engine, "stg_items", postgres_path.schema)
    loader.ensure_table()
    page = prepare_page(AWKWARD, extract="items", primary_key=("id",), skip=0)
    now = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)
    context = {"parameters": {"p": 1}, "checkpoint": {"skip": 6, "page_index": 1, "total_records": 6,
                                                      "last_checkpoint_time": now.isoformat()}, "big": 2**70}
    mine = store.carried_save(record.run_id, run_context=context, records_loaded=6, owner="me", now=now)
    theirs = store.carried_save(record.run_id, run_context={"x": 1}, records_loaded=99, owner="other", now=now)
    with postgres_path.engine.begin() as conn:
        assert loader.write(conn, page, run_id=record.run_id, now=now, carry=mine).carried == 1
        assert loader.write(conn, page, run_id=record.run_id, now=now, carry=theirs).carried == 0
    row = store.get(record.run_id)
    assert (row.run_context, row.records_loaded, row.status, row.updated_at, row.checkpoint.skip) == (
        context, 6, RunStatus.RUNNING, now, 6
    )
