"""Bad pages, HTTP errors and secrets: every failure names the extract, the position and the
reason, keeps what was stored, and never shows a secret."""

import gc
import json
import logging
from dataclasses import replace
from datetime import timezone

import pytest
import sqlalchemy as sa

from etl_assets.checkpoints import RunStatus
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.errors import MalformedPageError, SettingsError, SourceHTTPError, WarehouseError
from etl_assets.extract import ExtractHooks
from etl_assets_tests.support import extract, items_spec, simple_records

TOKEN = "tok-9f8e7d6c5b4a-secret"
API_KEY = "key-0a1b2c3d4e5f-secret"


@pytest.fixture
def source():
    demo = DemoSource(collections={"items": ListCollection(simple_records(50))})
    with ServerThread(demo) as server:
        yield server


def ids(warehouse):
    return sorted(int(k) for k in warehouse.records("items"))


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(path="/items", skip=20, action="malformed", body="<html><body>Service down</body></html>", content_type="text/html"),
         "the body is not valid JSON"),
        (Fault(path="/items", skip=20, action="malformed", body='{"total": 50, "items": [{"id": 21}, {"id"'),
         "the body is not valid JSON"),
        (Fault(path="/items", skip=20, action="malformed", body=""), "the body is not valid JSON"),
        (Fault(path="/items", skip=20, action="malformed", body='{"total": 50, "items": [NaN]}'), "NaN is not valid JSON"),
        (Fault(path="/items", skip=20, action="malformed", body='{"total": 50, "data": []}'),
         "data_selector 'items' must select a list of records, found nothing"),
        (Fault(path="/items", skip=20, action="malformed", body='{"total": 50, "items": {"id": 1}}'),
         "data_selector 'items' must select a list of records, found dict"),
        (Fault(path="/items", skip=20, action="malformed", body='{"total": 50, "items": [{"id": 21}, 7]}'),
         "record 21 (position 1 in the page): records must be JSON objects, got int"),
        (Fault(path="/items", skip=20, action="malformed", body='{"total": 50, "items": [{"id": 21}, {"name": "x"}]}'),
         "record 21 (position 1 in the page): primary key id is missing"),
        (Fault(path="/items", skip=20, action="malformed", body='{"total": 50, "items": [{"id": 21, "n": "\\ud800x"}]}'),
         "record 20 (position 0 in the page), key '21': cannot encode: UnicodeEncodeError"),
        (Fault(path="/items", skip=20, action="malformed",
               body='{"total": 50, "items": [{"id": 21, "n": ' + "[" * 5000 + "]" * 5000 + "}]}"),
         "the body is not valid JSON"),
    ],
    ids=["html-200", "cut-off", "empty", "nan", "no-selector", "not-a-list", "not-an-object", "no-key",
         "lone-surrogate", "nested-5000-deep"],
)
def test_malformed_page_fails_naming_extract_skip_and_reason(source, warehouse, fault, reason):
    source.source.add_fault(fault)
    with pytest.raises(MalformedPageError) as raised:
        extract(items_spec(source.url, limit=10), warehouse, interval=60)
    message = str(raised.value)
    assert message.startswith("extract 'items', skip=20")
    assert reason in message
    run = warehouse.runs("items")[-1]
    assert run.status is RunStatus.FAILED and run.error_message == message
    assert (run.checkpoint.skip, run.checkpoint.page_index, run.checkpoint.total_records) == (20, 2, 20)
    assert ids(warehouse) == list(range(1, 21))
    # The page loop pauses the collector around a page and freezes the heap for the run: a
    # failing page must leave both as they were.
    assert (gc.isenabled(), gc.get_freeze_count()) == (True, 0)


def test_dropped_connection_is_retried(source, warehouse):
    source.source.add_fault(Fault(path="/items", skip=30, action="drop", times=2))
    result = extract(items_spec(source.url, limit=10), warehouse)
    assert sorted(r.skip for r in source.source.requests("/items")) == [0, 10, 20, 30, 30, 30, 40]
    assert ids(warehouse) == list(range(1, 51)) and result.requests == 7


def secret_spec(url):
    spec = items_spec(url, limit=10, params={"api_key": "${ITEMS_API_KEY}", "region": "eu"})
    return replace(spec, headers={"Authorization": "Bearer ${ITEMS_TOKEN}"})


ENV = {"ITEMS_TOKEN": TOKEN, "ITEMS_API_KEY": API_KEY}


def everything_said(warehouse, caplog, error):
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {warehouse.table('dw_etl_runs')}")).mappings().all()
    return "\n".join([caplog.text, str(error), json.dumps([{k: str(v) for k, v in r.items()} for r in rows])])


def test_unretried_4xx_names_url_and_status_without_secrets(source, warehouse, caplog):
    source.source.add_fault(Fault(path="/items", skip=10, status=404, times=None))
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceHTTPError) as raised:
        extract(secret_spec(source.url), warehouse, environ=ENV, log=logging.getLogger("secrets"))
    message = str(raised.value)
    assert message == (
        f"extract 'items': {source.url}/items?api_key=***&region=eu&skip=10&limit=10 answered "
        "HTTP 404 Not Found; this status is not retried (check the URL, parameters and credentials)"
    )
    assert raised.value.status_code == 404
    said = everything_said(warehouse, caplog, raised.value)
    assert TOKEN not in said and API_KEY not in said
    run = warehouse.runs("items")[-1]
    assert run.parameters["params"] == {"api_key": "${ITEMS_API_KEY}", "region": "eu"}


def test_checkpoint_lines_are_few_when_checkpoints_are_many(source, warehouse, caplog):
    # Checkpoints on every page, but at most one line per 10 s: the first, then none in a run this short.
    with caplog.at_level(logging.INFO):
        result = extract(items_spec(source.url, limit=20), warehouse, interval=0, log=logging.getLogger("cp"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("checkpoint_saved")]
    assert lines == [f"checkpoint_saved extract=items run_id={result.run_id} skip=20 page_index=1 records=20"]
    assert result.pages == 3
    assert warehouse.run(result.run_id).checkpoint is None


def test_secrets_reach_the_source_but_nothing_else(source, warehouse, caplog):
    source.source.add_fault(Fault(path="/items", skip=20, status=503, times=1))
    with caplog.at_level(logging.DEBUG):
        result = extract(secret_spec(source.url), warehouse, environ=ENV, log=logging.getLogger("secrets"))
    assert "retry 1/2" in caplog.text and "api_key=***" in caplog.text
    said = everything_said(warehouse, caplog, result)
    assert TOKEN not in said and API_KEY not in said
    assert result.records_fetched == 50


def test_missing_secret_variable_fails_before_anything_runs(source, warehouse):
    with pytest.raises(SettingsError, match=r"extract 'items': client.headers.Authorization refers to environment variable ITEMS_TOKEN, which is not set"):
        extract(secret_spec(source.url), warehouse, environ={"ITEMS_API_KEY": API_KEY})
    assert source.source.requests() == []


def test_checkpoints_are_logged_and_timestamps_are_utc(source, warehouse, caplog):
    with caplog.at_level(logging.INFO):
        result = extract(items_spec(source.url, limit=20), warehouse, interval=0, log=logging.getLogger("cp"),
                         log_every=0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("checkpoint_saved")]
    assert lines == [
        f"checkpoint_saved extract=items run_id={result.run_id} skip={skip} page_index={page} records={skip}"
        for skip, page in ((20, 1), (40, 2), (50, 3))
    ]
    assert (gc.isenabled(), gc.get_freeze_count()) == (True, 0)
    run = warehouse.run(result.run_id)
    for moment in (run.started_at, run.updated_at, run.finished_at):
        assert moment.tzinfo is timezone.utc
    assert run.started_at <= run.updated_at <= run.finished_at


def test_existing_tables_are_kept_as_they_are(source, warehouse):
    extract(items_spec(source.url, limit=50), warehouse)
    with warehouse.engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {warehouse.table('dw_etl_runs')} ADD COLUMN owner_note TEXT"))
        conn.execute(sa.text(f"UPDATE {warehouse.table('dw_etl_runs')} SET owner_note = 'keep me'"))
    extract(items_spec(source.url, limit=50), warehouse)
    with warehouse.engine.connect() as conn:
        notes = conn.execute(
            sa.text(f"SELECT run_id, owner_note FROM {warehouse.table('dw_etl_runs')} ORDER BY run_id")
        ).all()
    assert [tuple(n) for n in notes] == [(1, "keep me"), (2, None)]
    assert len(warehouse.records("items")) == 50


ODD_TOKEN = "AbC+dEf/GhI==tok"


@pytest.mark.parametrize(
    "spec_params, spec_headers, fault_body",
    [
        ({"api_key": "${ODD}"}, {}, None),  # percent-encoded in the URL
        ({}, {"X-Key": "key=${ODD}"}, f"<html>invalid token {ODD_TOKEN}</html>"),  # echoed bare in a page
        ({"api_key": "${ODD}"}, {}, f"<html>bad key {ODD_TOKEN}</html>"),
    ],
    ids=["percent-encoded", "echoed-from-header", "echoed-from-param"],
)
def test_secrets_are_hidden_in_every_form(source, warehouse, caplog, spec_params, spec_headers, fault_body):
    spec = replace(items_spec(source.url, limit=10, params=spec_params), headers=spec_headers)
    if fault_body is None:
        source.source.add_fault(Fault(path="/items", skip=10, status=404, times=None))
    else:
        source.source.add_fault(Fault(path="/items", skip=10, action="malformed", body=fault_body, content_type="text/html"))
    with caplog.at_level(logging.DEBUG), pytest.raises((SourceHTTPError, MalformedPageError)) as raised:
        extract(spec, warehouse, environ={"ODD": ODD_TOKEN}, log=logging.getLogger("odd"))
    said = everything_said(warehouse, caplog, raised.value)
    assert "***" in said
    for form in (ODD_TOKEN, "AbC%2BdEf%2FGhI%3D%3Dtok"):
        assert form not in said
    assert ids(warehouse) == list(range(1, 11))


def test_a_header_secret_with_a_trailing_newline_is_trimmed_and_an_inner_one_refused(source, warehouse):
    spec = replace(items_spec(source.url, limit=10), headers={"Authorization": "Bearer ${ITEMS_TOKEN}"})
    result = extract(spec, warehouse, environ={"ITEMS_TOKEN": TOKEN + "\n"})
    assert result.records_fetched == 50
    with pytest.raises(SettingsError) as raised:
        extract(spec, warehouse, environ={"ITEMS_TOKEN": "abc\ndef-ghi"})
    assert str(raised.value) == (
        "extract 'items': client.headers.Authorization: the value of ITEMS_TOKEN contains a line break, "
        "which HTTP headers cannot carry"
    )
    assert "def-ghi" not in str(raised.value)


def test_a_sqlalchemy_error_without_a_driver_cause_still_fails_the_run_cleanly(source, warehouse):
    """Not every SQLAlchemy error wraps a driver error (no ``.orig``): the run must still end
    ``failed`` with its checkpoint and a message, not with an AttributeError of its own."""

    def before_commit(conn, skip, _checkpoint):
        if skip == 20:
            raise sa.exc.InvalidRequestError("the connection was closed under this page")

    with pytest.raises(WarehouseError) as raised:
        extract(items_spec(source.url, limit=10), warehouse, hooks=ExtractHooks(before_commit=before_commit))
    assert str(raised.value) == (
        "extract 'items': the warehouse refused the page at skip=20: "
        "InvalidRequestError: the connection was closed under this page"
    )
    [run] = warehouse.runs("items")
    assert (run.status, run.checkpoint.skip, run.records_loaded) == (RunStatus.FAILED, 20, 20)
    assert run.error_message == str(raised.value)
    assert ids(warehouse) == list(range(1, 21))


def test_a_total_of_unicode_digits_is_ignored_with_a_warning(source, warehouse, caplog):
    """'²' passes str.isdigit() but is no count: the total is ignored, as any other non-count."""
    source.source.add_fault(Fault(path="/items", skip=0, action="malformed", times=1,
                                  body='{"total": "\u00b2", "items": ' + json.dumps(simple_records(10)) + "}"))
    with caplog.at_level(logging.WARNING):
        result = extract(items_spec(source.url, limit=10), warehouse, log=logging.getLogger("odd-total"))
    assert "ignoring the source's total from total_path 'total': '²' is not a count" in caplog.text
    assert (result.records_fetched, ids(warehouse)) == (50, list(range(1, 51)))


def test_a_header_value_http_cannot_carry_fails_before_anything_runs(source, warehouse):
    spec = replace(items_spec(source.url, limit=10), headers={"Authorization": "Bearer ${ODD_TOKEN}"})
    with pytest.raises(SettingsError) as raised:
        extract(spec, warehouse, environ={"ODD_TOKEN": "t\u00f8ken-123"})
    assert str(raised.value) == (
        "extract 'items': client.headers.Authorization: the value of ODD_TOKEN holds a character HTTP headers "
        "cannot carry (only printable ASCII is allowed)"
    )
    assert "ken-123" not in str(raised.value)
    assert source.source.requests() == []
    created = sa.inspect(warehouse.engine).has_table("dw_etl_runs", schema=warehouse.schema)
    assert not created or warehouse.runs("items") == [], "no row was claimed, so none is left running"


def test_a_heap_the_application_froze_stays_frozen(source, warehouse):
    """The page loop freezes the heap for a run and unfreezes it after, unless something
    (a server freezing before it forks workers, say) had frozen it already."""
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        result = extract(items_spec(source.url, limit=20), warehouse)
        assert result.records_fetched == 50
        # Frozen objects freed by reference counting during the run leave the count (a few
        # hundred here); an unfreeze would have taken it to 0.
        assert frozen * 0.9 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
