"""Field cases C1, C3-C9 and C12 of shared/cases/field-cases.md, each with the expected
values written there, on SQLite and on PostgreSQL, against the demo source over loopback.
"""

import logging
import sqlite3
import threading
import time
from email.utils import formatdate

import pytest
import sqlalchemy as sa

from etl_assets.checkpoints import RunStatus
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.errors import JobTimeoutError, SourceHTTPError, WarehouseError
from etl_assets.extract import ExtractHooks
from etl_assets_tests.support import extract, items_spec, simple_records, with_limit


@pytest.fixture
def source():
    demo = DemoSource(collections={"items": ListCollection(simple_records(30))})
    with ServerThread(demo) as server:
        yield server


def serve(server, records, total=None):
    server.source.collections["items"].replace(records)
    if total is not None:
        server.source.total_overrides["items"] = total
    server.source.clear_requests()


def skips(server):
    """The skips requested, in arrival order. Pages are fetched ahead (up to four in
    flight once the total is known), so tests compare them sorted: the field cases count
    requests, they do not order them."""
    return [r.skip for r in server.source.requests("/items")]


def ids(warehouse):
    return sorted(int(k) for k in warehouse.records("items"))


def test_c1_total_is_only_an_estimate(source, warehouse, caplog):
    serve(source, simple_records(25), total=12)
    with caplog.at_level(logging.WARNING):
        result = extract(items_spec(source.url, limit=10), warehouse, log=logging.getLogger("c1"))
    assert sorted(skips(source)) == [0, 10, 20]
    assert ids(warehouse) == list(range(1, 26))
    run = warehouse.run(result.run_id)
    assert run.status is RunStatus.SUCCESS
    assert run.checkpoint is None and "checkpoint" not in run.run_context
    assert run.records_loaded == 25
    assert result.records_fetched == 25
    assert "the source's total (12) disagreed" in caplog.text


def test_c1_variant_total_estimate_on_a_page_boundary(source, warehouse):
    serve(source, simple_records(30), total=12)
    result = extract(items_spec(source.url, limit=10), warehouse)
    assert sorted(skips(source)) == [0, 10, 20, 30]
    assert ids(warehouse) == list(range(1, 31))
    assert warehouse.run(result.run_id).records_loaded == 30


@pytest.mark.parametrize("status", [429, 503])
def test_c3_retry_after_seconds(source, warehouse, status):
    serve(source, simple_records(30))
    source.source.add_fault(Fault(path="/items", skip=10, status=status, retry_after="2", times=1))
    started = time.monotonic()
    result = extract(items_spec(source.url, limit=10), warehouse)
    elapsed = time.monotonic() - started
    assert sorted(skips(source)) == [0, 10, 10, 20]
    assert sorted((r.skip, r.status) for r in source.source.requests("/items")) == [
        (0, 200), (10, 200), (10, status), (20, 200)
    ]
    assert 1.9 <= elapsed < 4, "waits about the 2 s asked for, not much longer"
    assert ids(warehouse) == list(range(1, 31))
    assert warehouse.run(result.run_id).status is RunStatus.SUCCESS


def test_c3_retry_after_http_date(source, warehouse):
    serve(source, simple_records(30))
    source.source.add_fault(
        Fault(path="/items", skip=10, status=429, retry_after=formatdate(time.time() + 2, usegmt=True), times=1)
    )
    started = time.monotonic()
    result = extract(items_spec(source.url, limit=10), warehouse)
    elapsed = time.monotonic() - started
    assert sorted(skips(source)) == [0, 10, 10, 20]
    assert 0.9 <= elapsed < 4, "an HTTP date 2 s ahead (whole seconds): waits 1 to 2 s"
    assert ids(warehouse) == list(range(1, 31))
    assert warehouse.run(result.run_id).status is RunStatus.SUCCESS


def test_c3_absurd_retry_after_never_sleeps_past_the_deadline(source, warehouse):
    serve(source, simple_records(30))
    source.source.add_fault(Fault(path="/items", skip=10, status=429, retry_after="86400", times=None))
    spec = items_spec(source.url, limit=10)
    started = time.monotonic()
    with pytest.raises(JobTimeoutError) as raised:
        extract(spec, warehouse, timeout=10, interval=60)
    assert time.monotonic() - started < 10
    run = warehouse.runs("items")[-1]
    assert run.status is RunStatus.RUNNING
    checkpoint = run.checkpoint
    assert (checkpoint.skip, checkpoint.page_index, checkpoint.total_records) == (10, 1, 10)
    assert ids(warehouse) == list(range(1, 11))
    assert f"dw_etl_runs run {run.run_id} stays 'running'" in str(raised.value)
    assert "dagster asset materialize -m etl_assets.definitions --select items" in str(raised.value)

    source.source.clear_faults()
    source.source.clear_requests()
    result = extract(spec, warehouse, interval=60)
    assert result.run_id == run.run_id and result.resumed_from_skip == 10
    assert sorted(skips(source)) == [10, 20]
    assert ids(warehouse) == list(range(1, 31))
    final = warehouse.run(run.run_id)
    assert final.status is RunStatus.SUCCESS and final.records_loaded == 30 and final.checkpoint is None


def test_c4_intermittent_504(source, warehouse):
    serve(source, simple_records(100))
    source.source.add_fault(Fault(path="/items", skip=50, status=504, times=2))
    result = extract(items_spec(source.url, limit=25), warehouse)
    assert sorted(skips(source)) == [0, 25, 50, 50, 50, 75]
    assert ids(warehouse) == list(range(1, 101))
    assert warehouse.run(result.run_id).status is RunStatus.SUCCESS


def test_c4_persistent_504_fails_with_checkpoint_then_resumes(source, warehouse):
    serve(source, simple_records(100))
    source.source.add_fault(Fault(path="/items", skip=50, status=504, times=None))
    spec = items_spec(source.url, limit=25)
    with pytest.raises(SourceHTTPError, match=r"skip=50.*failed 3 times, last: HTTP 504"):
        extract(spec, warehouse, interval=60)
    run = warehouse.runs("items")[-1]
    assert run.status is RunStatus.FAILED
    assert run.checkpoint.skip == 50 and run.checkpoint.total_records == 50
    assert "HTTP 504" in run.error_message
    assert ids(warehouse) == list(range(1, 51))

    source.source.clear_faults()
    source.source.clear_requests()
    result = extract(spec, warehouse, interval=60)
    assert sorted(skips(source)) == [50, 75]
    assert ids(warehouse) == list(range(1, 101))
    assert (result.run_id, result.updated, result.inserted) == (run.run_id, 0, 50)
    assert warehouse.run(run.run_id).status is RunStatus.SUCCESS


@pytest.mark.parametrize("action", ["hang", "drip"])
def test_c5_request_that_never_answers(source, warehouse, action):
    serve(source, simple_records(30))
    source.source.add_fault(Fault(path="/items", skip=10, action=action, drip_interval=4.0, times=None))
    threads_before = threading.active_count()
    started = time.monotonic()
    with pytest.raises(JobTimeoutError):
        extract(items_spec(source.url, limit=10), warehouse, timeout=10, interval=60)
    elapsed = time.monotonic() - started
    assert elapsed < 10 + 2.5, f"ended {elapsed:.1f} s after start"
    run = warehouse.runs("items")[-1]
    assert run.status is RunStatus.RUNNING
    assert (run.checkpoint.skip, run.checkpoint.page_index) == (10, 1)
    assert ids(warehouse) == list(range(1, 11))
    assert threading.active_count() == threads_before


def _fail_write(warehouse, conn):
    """A real lost connection on PostgreSQL; SQLite's equivalent error elsewhere."""
    if warehouse.dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
    raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("disk I/O error"))


def test_c6_failed_attempts_do_not_append_again(source, warehouse):
    serve(source, simple_records(100))
    spec = items_spec(source.url, limit=25)
    attempt = {"n": 0}

    def before_commit(conn, skip, _checkpoint):
        if skip == 75 and attempt["n"] < 3:
            _fail_write(warehouse, conn)

    hooks = ExtractHooks(before_commit=before_commit)
    results = []
    for attempt["n"] in (1, 2):
        with pytest.raises(WarehouseError, match="skip=75"):
            extract(spec, warehouse, interval=60, hooks=hooks)
        run = warehouse.runs("items")[-1]
        assert run.status is RunStatus.FAILED and run.checkpoint.skip == 75
    attempt["n"] = 3
    results.append(extract(spec, warehouse, interval=60, hooks=hooks))

    requested = skips(source)
    assert [requested.count(s) for s in (0, 25, 50)] == [1, 1, 1]
    assert requested.count(75) == 3
    run = warehouse.runs("items")[-1]
    assert len(warehouse.runs("items")) == 1
    attempts = run.run_context["attempts"]
    assert [a.get("resumed_from_skip") for a in attempts] == [None, 75, 75]
    assert sum(a["inserted"] for a in attempts) == 100
    assert sum(a["updated"] for a in attempts) == 0
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "success"]
    assert len(warehouse.records("items")) == 100 and ids(warehouse) == list(range(1, 101))
    assert run.status is RunStatus.SUCCESS and run.checkpoint is None and run.records_loaded == 100


def test_c7_checkpoint_write_failure_rolls_back_its_page(source, warehouse):
    serve(source, simple_records(30))
    spec = items_spec(source.url, limit=10)
    failed = {"done": False}

    def before_commit(conn, skip, with_checkpoint):
        if skip == 10 and with_checkpoint and not failed["done"]:
            failed["done"] = True
            _fail_write(warehouse, conn)

    with pytest.raises(WarehouseError):
        extract(spec, warehouse, interval=0, hooks=ExtractHooks(before_commit=before_commit))
    assert ids(warehouse) == list(range(1, 11)), "the page rolled back with its checkpoint"
    result = extract(spec, warehouse, interval=0)
    attempts = warehouse.run(result.run_id).run_context["attempts"]
    assert sum(a["inserted"] for a in attempts) == 30
    assert sum(a["updated"] for a in attempts) == 0
    assert ids(warehouse) == list(range(1, 31))
    assert warehouse.run(result.run_id).status is RunStatus.SUCCESS


C8_PAGE = [
    {"id": 1, "name": "a"},
    {"id": 2, "name": "b"},
    {"id": 3, "name": "c1"},
    {"id": 4, "name": "d"},
    {"id": 3, "name": "c2"},
]


@pytest.mark.parametrize("limit", [10, 3], ids=["one-page", "across-pages"])
def test_c8_same_key_twice(source, warehouse, limit):
    serve(source, C8_PAGE)
    result = extract(items_spec(source.url, limit=limit), warehouse)
    stored = warehouse.records("items")
    assert sorted(stored) == ["1", "2", "3", "4"]
    assert stored["3"]["name"] == "c2"
    assert warehouse.run(result.run_id).status is RunStatus.SUCCESS
    assert result.records_fetched == 5
    if limit == 10:
        assert (result.duplicates, result.inserted, result.updated) == (1, 4, 0)
    else:
        assert (result.duplicates, result.inserted, result.updated) == (0, 4, 1)


def test_c8_variant_key_ends_one_page_and_starts_the_next(source, warehouse):
    """Pages [1, 2, 3:"c1"] and [3:"c2", 4]: the same final table, the repeat counted as an update."""
    serve(source, [C8_PAGE[0], C8_PAGE[1], C8_PAGE[2], C8_PAGE[4], C8_PAGE[3]])
    result = extract(items_spec(source.url, limit=3), warehouse)
    stored = warehouse.records("items")
    assert {k: v["name"] for k, v in stored.items()} == {"1": "a", "2": "b", "3": "c2", "4": "d"}
    assert (result.records_fetched, result.duplicates, result.inserted, result.updated) == (5, 0, 4, 1)
    assert sorted(skips(source)) == [0, 3]
    assert warehouse.run(result.run_id).status is RunStatus.SUCCESS


def test_c9_nul_character(source, warehouse, caplog):
    serve(source, [{"id": 1, "name": "ok"}, {"id": 2, "name": "ab\u0000c"}, {"id": 3, "name": "z"}])
    spec = items_spec(source.url, limit=10)
    with caplog.at_level(logging.WARNING):
        first = extract(spec, warehouse, log=logging.getLogger("c9"))
    stored = warehouse.records("items")
    assert {k: v["name"] for k, v in stored.items()} == {"1": "ok", "2": "abc", "3": "z"}
    assert "record '2': removed NUL characters from name" in caplog.text
    assert (first.inserted, first.updated) == (3, 0)
    second = extract(spec, warehouse)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 3)


def _stop_at_30(source, warehouse, spec):
    source.source.add_fault(Fault(path="/items", skip=30, status=429, retry_after="86400", times=None))
    with pytest.raises(JobTimeoutError):
        extract(spec, warehouse, timeout=5, interval=60)
    run = warehouse.runs("items")[-1]
    assert (run.checkpoint.skip, run.checkpoint.page_index) == (30, 3)
    source.source.clear_faults()
    source.source.clear_requests()
    return run


def test_c12a_resume_after_page_size_changed(source, warehouse):
    serve(source, simple_records(100))
    first = _stop_at_30(source, warehouse, items_spec(source.url, limit=10))
    result = extract(with_limit(items_spec(source.url, limit=10), 25), warehouse)
    assert result.run_id == first.run_id and result.resumed_from_skip == 30
    assert sorted(skips(source)) == [30, 55, 80]
    assert ids(warehouse) == list(range(1, 101))
    assert warehouse.run(first.run_id).records_loaded == 100


def test_c12b_changed_parameter_starts_fresh(source, warehouse, caplog):
    serve(source, simple_records(100))
    first = _stop_at_30(source, warehouse, items_spec(source.url, limit=10))
    changed = items_spec(source.url, limit=10, params={"filter": "active"})
    with caplog.at_level(logging.WARNING):
        result = extract(changed, warehouse, log=logging.getLogger("c12"))
    assert "parameters differ: params.filter: '<absent>' -> 'active'" in caplog.text
    assert result.run_id != first.run_id and result.resumed_from_skip is None
    assert skips(source)[0] == 0 and len(skips(source)) == 10
    old = warehouse.run(first.run_id)
    assert old.status is RunStatus.FAILED and old.checkpoint is None
    assert "parameters changed" in old.error_message
    assert warehouse.run(result.run_id).records_loaded == 100
    assert ids(warehouse) == list(range(1, 101))


def test_c12b_filter_changed_through_its_environment_variable_starts_fresh(source, warehouse, caplog):
    serve(source, simple_records(100))
    spec = items_spec(source.url, limit=10, params={"updated_since": "${SINCE}"})
    source.source.add_fault(Fault(path="/items", skip=30, status=429, retry_after="86400", times=None))
    with pytest.raises(JobTimeoutError):
        extract(spec, warehouse, timeout=5, interval=60, environ={"SINCE": "2025-01-01"})
    first = warehouse.runs("items")[-1]
    source.source.clear_faults()
    source.source.clear_requests()
    with caplog.at_level(logging.WARNING):
        result = extract(spec, warehouse, environ={"SINCE": "2026-06-01"}, log=logging.getLogger("c12env"))
    assert "parameters differ: resolved_params_digest: " in caplog.text
    assert "2025-01-01" not in caplog.text and "2026-06-01" not in caplog.text
    assert result.run_id != first.run_id and result.resumed_from_skip is None
    assert sorted(skips(source)) == list(range(0, 100, 10))
    assert warehouse.run(first.run_id).status is RunStatus.FAILED
    source.source.clear_requests()
    source.source.add_fault(Fault(path="/items", skip=30, status=429, retry_after="86400", times=None))
    with pytest.raises(JobTimeoutError):
        extract(spec, warehouse, timeout=5, interval=60, environ={"SINCE": "2026-06-01"}, resume=False)
    source.source.clear_faults()
    resumed = extract(spec, warehouse, environ={"SINCE": "2026-06-01"})
    assert resumed.resumed_from_skip == 30
