"""One extractor per dw_etl_runs row: claims, fenced writes and explicit resumes."""

import threading
import time
from dataclasses import replace

import pytest
import sqlalchemy as sa

from etl_assets.checkpoints import RunStatus
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.errors import ExtractAlreadyRunningError, ExtractError, JobTimeoutError
from etl_assets.extract import ExtractHooks, ExtractOptions, run_extract
from etl_assets_tests.support import items_spec, simple_records


@pytest.fixture
def source():
    demo = DemoSource(collections={"items": ListCollection(simple_records(30))})
    with ServerThread(demo) as server:
        yield server


def run(
    spec, warehouse, *, dagster_run_id, resume_run_id=None, resume=True, active=(), hooks=None, timeout=60.0, interval=0
):
    return run_extract(
        spec,
        warehouse.store,
        ExtractOptions(
            timeout_seconds=timeout,
            checkpoint_interval_seconds=interval,
            resume_from_checkpoint=resume,
            dagster_run_id=dagster_run_id,
            resume_run_id=resume_run_id,
        ),
        environ={},
        holder=lambda row: f"Dagster run {row.dagster_run_id} (STARTED)" if row.dagster_run_id in active else None,
        hooks=hooks,
    )


def stop_after_first_page(spec, warehouse, source, dagster_run_id="first"):
    """Leave a ``running`` row with checkpoint skip=10, as a timed-out run does.

    The page at skip=10 hangs, so the run always times out there; the budget is what the
    first page may take, and on a busy machine that can be more than a few hundred ms."""
    source.source.add_fault(Fault(path="/items", skip=10, action="hang", times=1))
    with pytest.raises(JobTimeoutError):
        run(spec, warehouse, dagster_run_id=dagster_run_id, timeout=2)
    source.source.clear_faults()
    source.source.clear_requests()
    [row] = warehouse.runs("items")
    assert (row.status, row.checkpoint.skip, row.dagster_run_id) == (RunStatus.RUNNING, 10, dagster_run_id)
    return row


def test_a_row_held_by_an_active_run_is_left_alone(source, warehouse):
    spec = items_spec(source.url)
    row = stop_after_first_page(spec, warehouse, source)
    with pytest.raises(ExtractAlreadyRunningError, match=r"dw_etl_runs run \d+ is held by Dagster run first \(STARTED\); this run made no request"):
        run(spec, warehouse, dagster_run_id="second", active={"first"})
    assert source.source.requests("/items") == []
    after = warehouse.run(row.run_id)
    assert (after.dagster_run_id, after.checkpoint, after.updated_at) == ("first", row.checkpoint, row.updated_at)
    assert len(warehouse.runs("items")) == 1


def test_a_run_that_lost_its_row_stops_without_writing(source, warehouse):
    """Another run takes the row after page 2 commits: page 3 is rolled back, nothing moves."""
    spec = items_spec(source.url)

    def take_over(conn, skip, saved):
        if skip == 10:
            table = warehouse.store.table
            conn.execute(sa.update(table).values(dagster_run_id="thief"))

    with pytest.raises(ExtractAlreadyRunningError, match=r"another run took over dw_etl_runs run \d+.*skip=20"):
        run(spec, warehouse, dagster_run_id="victim", hooks=ExtractHooks(before_commit=take_over))
    [row] = warehouse.runs("items")
    assert (row.status, row.dagster_run_id, row.checkpoint.skip, row.records_loaded) == (
        RunStatus.RUNNING,
        "thief",
        20,
        20,
    )
    assert sorted(int(k) for k in warehouse.records("items")) == list(range(1, 21))


def test_a_run_that_lost_its_row_between_checkpoints_stops_without_writing(source, warehouse):
    """As above with no checkpoint due after the first page's: the page's progress update (on
    PostgreSQL carried in the page's own statement) finds the row taken, and page 3 is rolled
    back with it."""
    spec = items_spec(source.url)

    def take_over(conn, skip, saved):
        if skip == 10:
            conn.execute(sa.update(warehouse.store.table).values(dagster_run_id="thief"))

    with pytest.raises(ExtractAlreadyRunningError, match=r"another run took over dw_etl_runs run \d+.*skip=20"):
        run(spec, warehouse, dagster_run_id="victim", hooks=ExtractHooks(before_commit=take_over), interval=3600)
    [row] = warehouse.runs("items")
    assert (row.status, row.dagster_run_id, row.checkpoint.skip, row.records_loaded) == (RunStatus.RUNNING, "thief", 10, 20)
    assert sorted(int(k) for k in warehouse.records("items")) == list(range(1, 21))


def test_resume_run_id_resumes_that_row_even_with_resume_off(source, warehouse):
    spec = items_spec(source.url)
    row = stop_after_first_page(spec, warehouse, source)
    result = run(spec, warehouse, dagster_run_id="retry", resume_run_id=row.run_id, resume=False)
    assert (result.run_id, result.resumed_from_skip, result.records_fetched) == (row.run_id, 10, 20)
    assert [r.skip for r in source.source.requests("/items")] == [10, 20]
    final = warehouse.run(row.run_id)
    assert (final.status, final.records_loaded, final.checkpoint) == (RunStatus.SUCCESS, 30, None)


@pytest.mark.parametrize(
    "target, message",
    [
        ("missing", r"there is no dw_etl_runs run 999 to resume"),
        ("other", r"dw_etl_runs run \d+ belongs to extract 'others'"),
        ("done", r"dw_etl_runs run \d+ already succeeded; there is nothing to resume"),
    ],
)
def test_resume_run_id_that_cannot_be_resumed_is_refused(source, warehouse, target, message):
    spec = items_spec(source.url)
    if target == "missing":
        run_id = 999
    elif target == "other":
        source.source.collections["others"] = ListCollection(simple_records(5))
        run_id = run(items_spec(source.url, name="others", path="/others"), warehouse, dagster_run_id="o").run_id
    else:
        run_id = run(spec, warehouse, dagster_run_id="d").run_id
    source.source.clear_requests()
    with pytest.raises(ExtractError, match=message):
        run(spec, warehouse, dagster_run_id="retry", resume_run_id=run_id)
    assert source.source.requests("/items") == []


def test_two_runs_starting_together_never_both_extract(source, warehouse):
    """Two attempts of one extract behind a barrier, on a fresh warehouse: one extracts, the
    other stops at once. Repeated, since a race shows only sometimes."""
    spec = items_spec(source.url)
    for trial in range(5):
        barrier = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        def attempt(name):
            barrier.wait()
            try:
                outcomes[name] = run_extract(
                    spec, warehouse.store, ExtractOptions(timeout_seconds=30, checkpoint_interval_seconds=0),
                    environ={},
                )
            except ExtractAlreadyRunningError as exc:
                outcomes[name] = exc

        # The winner needs at least two answers in a row (page 0, then 10 and 20 together), so
        # it holds the row for at least 1 s after its claim: the other run, however late the
        # machine lets it reach its claim, finds the row taken rather than a finished run.
        source.source.latency_seconds = 0.5
        threads = [threading.Thread(target=attempt, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        errors = [o for o in outcomes.values() if isinstance(o, ExtractAlreadyRunningError)]
        results = [o for o in outcomes.values() if not isinstance(o, Exception)]
        assert (len(results), len(errors)) == (1, 1), f"trial {trial}: {outcomes}"
        assert "this run made no request and wrote nothing" in str(errors[0])
        assert results[0].records_fetched == 30
        assert len(warehouse.runs("items")) == trial + 1
        assert [r.skip for r in source.source.requests("/items")] == [0, 10, 20]
        source.source.clear_requests()


def test_first_runs_of_different_extracts_on_a_fresh_warehouse_both_create_their_tables(source, warehouse):
    source.source.collections["others"] = ListCollection(simple_records(5))
    barrier = threading.Barrier(2)
    results = {}

    def attempt(name):
        barrier.wait()
        results[name] = run_extract(
            items_spec(source.url, name=name, path=f"/{name}"), warehouse.store,
            ExtractOptions(timeout_seconds=30), environ={},
        ).records_fetched

    threads = [threading.Thread(target=attempt, args=(n,)) for n in ("items", "others")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {"items": 30, "others": 5}


def test_a_live_run_waiting_past_its_lease_keeps_the_row(source, warehouse):
    """The first run sleeps 5 s on a Retry-After with a 2 s lease: its heartbeat keeps the
    row, so a second run started meanwhile stops at once instead of taking it over.

    The margins are wide for a busy machine: the heartbeat (every 2/3 s) may be late by over
    a second before the lease lapses, and the second run has about 2 s to claim before the
    first one wakes up and finishes."""
    source.source.add_fault(Fault(path="/items", skip=10, status=429, retry_after="5", times=1))
    spec = replace(items_spec(source.url), max_in_flight=1)
    environ = {"ETL_RUN_LEASE_SECONDS": "2"}
    results = {}

    def first():
        results["first"] = run_extract(
            spec, warehouse.store, ExtractOptions(timeout_seconds=30, checkpoint_interval_seconds=0), environ=environ
        )

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(3.0)  # the first run is asleep on its Retry-After, past its 2 s lease
    with pytest.raises(ExtractAlreadyRunningError, match="this run made no request and wrote nothing"):
        run_extract(spec, warehouse.store, ExtractOptions(timeout_seconds=30), environ=environ)
    thread.join(30)
    assert results["first"].records_fetched == 30
    assert sorted(r.skip for r in source.source.requests("/items")) == [0, 10, 10, 20]
    [row] = warehouse.runs("items")
    assert (row.status, row.records_loaded) == (RunStatus.SUCCESS, 30)


def _corrupt_checkpoint(warehouse, run_id, checkpoint):
    row = warehouse.run(run_id)
    with warehouse.store.transaction() as conn:
        warehouse.store.save(conn, run_id, run_context={**row.run_context, "checkpoint": checkpoint},
                             records_loaded=row.records_loaded, status=RunStatus.FAILED)


def test_a_checkpoint_edited_by_hand_is_closed_with_the_reason_and_a_new_run_starts(source, warehouse, caplog):
    """A row nothing can resume must not stop every later run of its extract: the next run
    closes it, naming the field, and starts from the beginning; asked to resume that row
    explicitly, a run refuses with the same reason."""
    spec = items_spec(source.url)
    source.source.add_fault(Fault(path="/items", skip=10, action="status", status=404, times=1))
    with pytest.raises(ExtractError):
        run(spec, warehouse, dagster_run_id="first")
    _corrupt_checkpoint(warehouse, 1, {"page_index": "abc", "total_records": 10})
    with pytest.raises(ExtractError) as refused:
        run(spec, warehouse, dagster_run_id="explicit", resume_run_id=1)
    assert str(refused.value) == (
        "extract 'items': cannot resume: dw_etl_runs run 1: its checkpoint cannot be read: skip is missing"
    )
    result = run(spec, warehouse, dagster_run_id="second")
    assert (result.run_id, result.records_loaded, result.resumed_from_skip) == (2, 30, None)
    first = warehouse.run(1)
    assert (first.status, first.error_message) == (
        RunStatus.FAILED, "abandoned: dw_etl_runs run 1: its checkpoint cannot be read: skip is missing"
    )
    assert sorted(warehouse.records("items")) == sorted(str(i) for i in range(1, 31))


def test_a_changed_primary_key_over_stored_rows_stops_before_doubling_them(source, warehouse):
    """Keyed by id, then by [id, name]: the new keys match none of the stored ones, so the
    run stops before writing anything; once the table is emptied the new key loads once."""
    run(items_spec(source.url), warehouse, dagster_run_id="by-id")
    rekeyed = replace(items_spec(source.url), primary_key=("id", "name"))
    table = f"{warehouse.schema}.stg_items" if warehouse.schema else "stg_items"
    with pytest.raises(ExtractError) as refused:
        run(rekeyed, warehouse, dagster_run_id="by-id-and-name")
    assert str(refused.value) == (
        f"extract 'items': the primary key changed from ['id'] to ['id', 'name'], and {table} holds rows keyed "
        "by ['id'] (dw_etl_runs run 1); their keys would match none of the new ones and every record would be "
        f"stored twice. Empty the table (TRUNCATE {table}) or drop it, then run the extract again; nothing was changed"
    )
    assert [r.status for r in warehouse.runs("items")] == [RunStatus.SUCCESS]
    assert len(warehouse.records("items")) == 30
    with warehouse.engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {warehouse.table('stg_items')}"))
    result = run(rekeyed, warehouse, dagster_run_id="after-emptying")
    assert (result.run_id, result.inserted) == (2, 30)
    assert sorted(warehouse.records("items"))[:2] == ['["1","name-1"]', '["10","name-10"]']
