"""Page commits the warehouse loses after the run saw them commit.

Pages commit with ``synchronous_commit`` off, so a PostgreSQL crash can roll back the last of
them. The run's end must then never write its in-memory checkpoint (or success) over what the
warehouse still holds. Here the loss is produced exactly, by rolling a page's transaction back
under the engine just before it commits; the torture suite produces it with a real crash.
"""

import pytest

from etl_assets.checkpoints import RunStatus
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.errors import SourceHTTPError, WarehouseError
from etl_assets.extract import ExtractHooks
from etl_assets_tests.support import extract, items_spec, simple_records

RECORDS = 50


@pytest.fixture
def source():
    demo = DemoSource(collections={"items": ListCollection(simple_records(RECORDS))})
    with ServerThread(demo) as server:
        yield server


def lose_commit_at(lost_skip: int) -> ExtractHooks:
    def before_commit(conn, skip, _with_checkpoint):
        if skip == lost_skip:
            conn.exec_driver_sql("ROLLBACK")  # the page and its progress vanish; the engine thinks they landed

    return ExtractHooks(before_commit=before_commit)


def stored_ids(warehouse) -> list[int]:
    return sorted(int(k) for k in warehouse.records("items"))


def test_a_failure_after_lost_commits_keeps_the_stored_checkpoint(source, warehouse):
    source.source.add_fault(Fault(path="/items", skip=30, status=404))
    with pytest.raises(SourceHTTPError):
        extract(items_spec(source.url, limit=10), warehouse, interval=0, hooks=lose_commit_at(20))

    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.FAILED
    assert (row.checkpoint.skip, row.checkpoint.page_index, row.checkpoint.total_records) == (20, 2, 20)
    assert row.records_loaded == 20
    assert stored_ids(warehouse) == list(range(1, 21))
    assert row.error_message.endswith(
        "; extract 'items': the warehouse holds 20 of the 30 records this run committed (up to skip=30); "
        "the last page commits were rolled back, as a PostgreSQL crash does to commits made with "
        "synchronous_commit off; the run resumes from skip=20"
    )

    source.source.clear_requests()
    result = extract(items_spec(source.url, limit=10), warehouse)
    assert [r.skip for r in source.source.requests("/items")] == [20, 30, 40]
    assert result.records_loaded == RECORDS and result.inserted == 30
    assert stored_ids(warehouse) == list(range(1, RECORDS + 1))


def test_success_is_not_written_over_a_lost_last_page(source, warehouse):
    with pytest.raises(WarehouseError) as raised:
        extract(items_spec(source.url, limit=10), warehouse, interval=0, hooks=lose_commit_at(40))
    assert str(raised.value) == (
        "extract 'items': the warehouse holds 40 of the 50 records this run committed (up to skip=50); "
        "the last page commits were rolled back, as a PostgreSQL crash does to commits made with "
        "synchronous_commit off; the run resumes from skip=40"
    )

    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.FAILED and row.finished_at is not None
    assert (row.checkpoint.skip, row.checkpoint.page_index, row.checkpoint.total_records) == (40, 4, 40)
    assert row.records_loaded == 40
    assert row.run_context["attempts"][-1]["outcome"] == "failed"
    assert stored_ids(warehouse) == list(range(1, 41))

    source.source.clear_requests()
    result = extract(items_spec(source.url, limit=10), warehouse)
    assert [r.skip for r in source.source.requests("/items")] == [40]
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.SUCCESS and row.checkpoint is None and row.records_loaded == RECORDS
    assert result.inserted == 10
    assert stored_ids(warehouse) == list(range(1, RECORDS + 1))


def test_with_no_checkpoint_stored_yet_the_run_starts_over(source, warehouse):
    # A 60 s interval: no page has saved a checkpoint when the first page's commit is lost.
    source.source.add_fault(Fault(path="/items", skip=10, status=404))
    with pytest.raises(SourceHTTPError):
        extract(items_spec(source.url, limit=10), warehouse, interval=60, hooks=lose_commit_at(0))

    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.FAILED and row.checkpoint is None and row.records_loaded == 0
    assert row.error_message.endswith("the run resumes from the beginning (no checkpoint was stored)")
    assert stored_ids(warehouse) == []


def refuse_success(conn, warehouse) -> None:
    """A trigger that makes the warehouse refuse the write of ``success``, and only that."""
    table = warehouse.table("dw_etl_runs")
    if warehouse.dialect == "postgresql":
        conn.exec_driver_sql(
            f'CREATE FUNCTION "{warehouse.schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS '
            "$$ BEGIN RAISE EXCEPTION 'success refused by a test trigger'; END $$"
        )
        conn.exec_driver_sql(
            f"CREATE TRIGGER refuse_success BEFORE UPDATE ON {table} FOR EACH ROW "
            f"""WHEN (NEW.status = 'success') EXECUTE FUNCTION "{warehouse.schema}".refuse()"""
        )
    else:
        conn.exec_driver_sql(
            f"CREATE TRIGGER refuse_success BEFORE UPDATE ON {table} WHEN NEW.status = 'success' "
            "BEGIN SELECT RAISE(ABORT, 'success refused by a test trigger'); END"
        )


def test_a_warehouse_error_while_recording_success_fails_the_run_with_its_checkpoint(source, warehouse):
    def before_commit(conn, skip, _with_checkpoint):
        if skip == 40:
            refuse_success(conn, warehouse)

    with pytest.raises(WarehouseError) as raised:
        extract(items_spec(source.url, limit=10), warehouse, interval=0, hooks=ExtractHooks(before_commit=before_commit))
    driver_error = {"postgresql": "RaiseException", "sqlite": "IntegrityError"}[warehouse.dialect]
    assert str(raised.value) == (
        f"extract 'items': could not record the run's success: {driver_error}: success refused by a test trigger"
    )
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.FAILED and row.error_message == str(raised.value)
    assert (row.checkpoint.skip, row.checkpoint.page_index, row.checkpoint.total_records) == (50, 5, 50)
    assert stored_ids(warehouse) == list(range(1, RECORDS + 1))

    on_table = f" ON {warehouse.table('dw_etl_runs')}" if warehouse.dialect == "postgresql" else ""
    with warehouse.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TRIGGER refuse_success{on_table}")
    source.source.clear_requests()
    result = extract(items_spec(source.url, limit=10), warehouse)
    # The checkpoint says the source had no page left: the resume only records the success.
    assert row.checkpoint.exhausted
    assert [r.skip for r in source.source.requests("/items")] == []
    assert result.records_loaded == RECORDS and result.inserted == 0
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.SUCCESS and row.checkpoint is None
