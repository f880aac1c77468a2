"""A token from the environment, through Dagster, over a failed, a timed-out and a successful run:
it reaches the source in headers and query parameters, and shows nowhere else.

``test_extract_errors.py`` checks the masking of each kind of message one run at a time; this
is the end-to-end grep of everything a run leaves behind: Python log records, the Dagster event
log, every ``dw_etl_runs`` column read raw, the staging table, materialization metadata and the
exceptions themselves.
"""

import json
import logging
import traceback
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus

import dagster as dg
import pytest
import sqlalchemy as sa

from etl_assets.defs.assets import ExtractConfig, build_extract_asset
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.demo import DemoSource, Fault, ListCollection, create_app
from etl_assets.sources.spec import parse_extracts
from etl_assets_tests.support import AppServer, RequestCapture, simple_records

TOKEN = "tok-3f9a+Q7/z=c0ffee&x"
"""``+``, ``/``, ``=`` and ``&`` make every URL-encoded form differ from the token itself."""


def secret_document(url: str) -> dict[str, Any]:
    return {
        "name": "secrets",
        "client": {
            "base_url": url,
            "headers": {"Authorization": "Bearer ${ETL_TEST_TOKEN}", "X-Api-Key": "${ETL_TEST_TOKEN}"},
            "paginator": {"type": "offset", "limit": 10, "offset_param": "skip", "limit_param": "limit",
                          "total_path": "total"},
            "retries": {"max_attempts": 3, "backoff_seconds": 0.05, "max_backoff_seconds": 0.1},
            "max_in_flight": 1,  # one request at a time: the source sees an exact sequence
        },
        "resources": [
            {"name": "items", "primary_key": "id",
             "endpoint": {"path": "/items", "params": {"api_key": "${ETL_TEST_TOKEN}", "region": "eu"},
                          "data_selector": "items"}},
        ],
    }


def dump(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def test_a_token_reaches_the_source_and_nothing_else(warehouse, monkeypatch, caplog):
    monkeypatch.setenv("ETL_TEST_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    source = DemoSource(collections={"items": ListCollection(simple_records(50))})
    capture = RequestCapture(create_app(source))
    with AppServer(capture) as server:
        (spec,) = parse_extracts(secret_document(server.url), source_file="secrets.yaml")
        asset = build_extract_asset(spec)
        resources = {"checkpoints": CheckpointStoreResource(database_url=warehouse.url,
                                                            warehouse_schema=warehouse.schema)}
        instance = dg.DagsterInstance.ephemeral()
        shown = f"{server.url}/items?api_key=***&region=eu"

        # 1. fails: a 503 that is retried, then a page that echoes the token raw and URL-encoded
        source.add_fault(Fault(path="/items", skip=10, status=503, times=1))
        echo = f"<html>api_key {TOKEN} is not valid for {server.url}/items?api_key={quote_plus(TOKEN)}</html>"
        source.add_fault(Fault(path="/items", skip=20, action="malformed", body=echo, content_type="text/html"))
        failed = dg.materialize([asset], resources=resources, instance=instance, raise_on_error=False)
        (failure,) = [e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        message = failure.step_failure_data.error.cause.message
        assert message.startswith(
            f"etl_assets.errors.MalformedPageError: extract 'items', skip=20, {shown}&skip=20&limit=10: "
            "the body is not valid JSON ("
        )
        assert message.endswith(f"{len(echo.encode())} bytes, starting {echo[:80].replace(TOKEN, '***')!r}\n")

        # 2. times out waiting for the page after the checkpoint, which never comes (a hang, so
        #    however fast the machine); the budget leaves the run ample time to send its request
        source.add_fault(Fault(path="/items", skip=20, action="hang", times=1))
        with pytest.raises(Exception) as timed_out:
            dg.materialize([asset], resources=resources, instance=instance,
                           run_config=dg.RunConfig({"items": ExtractConfig(timeout_seconds=2)}))
        raised = "".join(traceback.format_exception(timed_out.value))
        assert "JobTimeoutError: extract 'items' stopped at its time budget (time budget of 2 s ran out while " \
               f"waiting for {shown}&skip=20&limit=10)" in raised

        # 3. resumes and succeeds
        succeeded = dg.materialize([asset], resources=resources, instance=instance)
        assert succeeded.success

    # The token did reach the source, in both headers and the query, on every request.
    assert [int(parse_qs(r.query)["skip"][0]) for r in capture.seen] == [0, 10, 10, 20, 20, 20, 30, 40]
    assert {(r.headers["authorization"], r.headers["x-api-key"]) for r in capture.seen} == {(f"Bearer {TOKEN}", TOKEN)}
    assert {tuple(parse_qs(r.query)["api_key"]) for r in capture.seen} == {(TOKEN,)}
    sent = {r.query.split("api_key=", 1)[1].split("&", 1)[0] for r in capture.seen}
    assert sent == {quote(TOKEN, safe="")}

    (row,) = warehouse.runs("items")
    assert (row.status.value, row.records_loaded) == ("success", 50)
    assert [a["outcome"] for a in row.run_context["attempts"]] == ["failed", "timeout", "success"]
    assert row.parameters["params"] == {"api_key": "${ETL_TEST_TOKEN}", "region": "eu"}

    places: dict[str, str] = {"python log records": "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )}
    for label, result in (("failed", failed), ("succeeded", succeeded)):
        places[f"{label} run events"] = "\n".join(dg.serialize_value(e) for e in result.all_events)
    places["event log of every run"] = "\n".join(
        dg.serialize_value(entry) for run in instance.get_runs() for entry in instance.all_logs(run.run_id)
    )
    places["timeout exception"] = raised
    (materialization,) = succeeded.get_asset_materialization_events()
    metadata = {k: v.value for k, v in materialization.materialization.metadata.items()}
    places["materialization metadata"] = dump(metadata)
    with warehouse.engine.connect() as conn:
        places["dw_etl_runs"] = dump([dict(r) for r in conn.execute(
            sa.text(f"SELECT * FROM {warehouse.table('dw_etl_runs')}")).mappings()])
        places["stg_items"] = dump([dict(r) for r in conn.execute(
            sa.text(f"SELECT * FROM {warehouse.table('stg_items')}")).mappings()])

    forms = {TOKEN, quote(TOKEN, safe=""), quote_plus(TOKEN, safe=""), quote(TOKEN), *sent}
    assert {(where, form) for where, text in places.items() for form in forms if form in text} == set()
    # ... while the places did say what happened, masked:
    assert "HTTP Request: GET " + shown in places["python log records"]  # httpx's own log lines
    assert f"{shown}&skip=10&limit=10: HTTP 503 Service Unavailable; retry 1/2" in places["event log of every run"]
    assert "api_key *** is not valid" in places["event log of every run"]
    assert metadata["records_fetched"] == 30 and metadata["resumed_from_skip"] == 20
    assert len(places["stg_items"]) > 50 * 20  # the 50 records are there to be searched
