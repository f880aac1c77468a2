"""What a tester found wrong with the paging styles, each a test with its exact outcome: capped
pages under drift and keyset paging, credentials in excerpts, cursors and loop-guard warnings,
runs interrupted after their last page, rotated credentials, and spec collisions."""

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from etl_assets.checkpoints import RunStatus
from etl_assets.demo import DemoSource, ListCollection, ServerThread
from etl_assets.errors import JobTimeoutError, MalformedPageError, SpecError, WarehouseError
from etl_assets.extract import ExtractHooks
from etl_assets.sources.spec import parse_extracts
from etl_assets_tests.support import AppServer, extract, simple_records
from etl_assets_tests.test_drift import ShrinksAfter, offset_spec
from etl_assets_tests.test_extract_durability import refuse_success
from etl_assets_tests.test_paging_styles import pointer_app, spec_with, stored_ids

KEY = "sk_live_0123456789abcdefghijklmnopqrstuv"
ENV = {"API_KEY": KEY}


def test_the_drift_re_read_walks_capped_pages_by_the_rows_returned(warehouse):
    demo = DemoSource(collections={"items": ShrinksAfter(simple_records(50), after_skip=20, lost=5)}, max_limit=5)
    with ServerThread(demo) as server:
        result = extract(offset_spec(server.url), warehouse)
    assert stored_ids(warehouse) == list(range(1, 51))
    assert (result.drift["status"], result.drift["reread_found"], result.drift["reread_to"]) == ("reread", 5, 35)


def test_keyset_paging_reads_on_past_a_capped_page_and_refuses_a_last_record_without_its_key(warehouse):
    keyset = {"type": "keyset", "cursor_path": "id", "cursor_param": "id_gt", "limit": 10, "limit_param": "limit"}
    demo = DemoSource(collections={"items": ListCollection(simple_records(45))}, max_limit=5)
    with ServerThread(demo) as server:
        result = extract(spec_with(server.url, "/keyset/items", keyset), warehouse)
        assert (result.records_fetched, stored_ids(warehouse)) == (45, list(range(1, 46)))
        assert len(demo.requests("/keyset/items")) == 10  # nine pages of 5 and an empty one

    records = [{**r, "seq": r["id"]} for r in simple_records(9, 1)] + [{"id": 10, "name": "no seq"}]
    app = pointer_app({"first": (records, {})})
    with AppServer(app) as server:
        spec = spec_with(server.url, "/x", {**keyset, "cursor_path": "seq", "cursor_param": "seq_gt"})
        with pytest.raises(MalformedPageError) as raised:
            extract(spec, warehouse)
        assert str(raised.value) == (
            f"extract 'items', skip=0, {server.url}/x?limit=10: keyset paging: the page's last record has no "
            "usable 'seq' to continue after (found nothing)"
        )
    assert stored_ids(warehouse) == list(range(1, 46))  # the bad page stored nothing


def test_a_page_echoing_a_credential_never_shows_even_a_cut_piece_of_it(warehouse):
    async def page(request: Request):
        return HTMLResponse(f"<html><body><p>Welcome back! Your session for key {request.query_params['api_key']} "
                            "has expired.</p></body></html>")

    with AppServer(Starlette(routes=[Route("/x", page)])) as server:
        spec = spec_with(server.url, "/x", {"type": "offset", "offset_param": "skip", "limit": 10},
                         params={"api_key": "${API_KEY}"})
        with pytest.raises(MalformedPageError) as raised:
            extract(spec, warehouse, environ=ENV)
    (row,) = warehouse.runs("items")
    assert "sk_live_0" not in str(raised.value) and "sk_live_0" not in row.error_message
    assert "starting '<html><body><p>Welcome back! Your session for key ***'" in row.error_message


def test_a_cursor_carrying_a_credential_fails_the_run_instead_of_being_stored(warehouse):
    app = pointer_app({"first": (simple_records(10, 1), {"next_cursor": f"{KEY}:10"})})
    with AppServer(app) as server:
        spec = spec_with(server.url, "/x", {"type": "cursor", "cursor_path": "next_cursor"},
                         params={"api_key": "${API_KEY}"})
        with pytest.raises(MalformedPageError) as raised:
            extract(spec, warehouse, environ=ENV)
    assert str(raised.value) == (
        "extract 'items', skip=0: the source's cursor carries a credential (***:10); "
        "it cannot be stored in a checkpoint"
    )
    (row,) = warehouse.runs("items")
    assert "sk_live" not in json.dumps(row.run_context) and stored_ids(warehouse) == []


def test_a_loop_guard_warning_masks_a_credential_however_the_link_writes_it(warehouse):
    lower_hex = "Zm9v%2bYmFy%2fYmF6%3d%3d"  # Zm9v+YmFy/YmF6== as .NET encodes it
    link = "/x?filter=" + "x" * 150 + "&p=2&api_key=" + lower_hex  # the value straddles character 200
    app = pointer_app({"first": (simple_records(10, 1), {"next": link}),
                       "2": (simple_records(10, 11), {"next": link})})
    with AppServer(app) as server:
        spec = spec_with(server.url, "/x", {"type": "json_link", "next_url_path": "next"},
                         params={"api_key": "${API_KEY}"})
        result = extract(spec, warehouse, environ={"API_KEY": "Zm9v+YmFy/YmF6=="})
    (warning,) = result.warnings
    assert "loop guard" in warning and "api_key=***" in warning
    assert "Zm9v" not in warning and "zm9v" not in warning.lower()
    (row,) = warehouse.runs("items")
    assert "Zm9v" not in json.dumps(row.run_context)


@pytest.mark.parametrize("style", ["cursor", "json_link"])
def test_a_pointer_run_interrupted_after_its_last_page_does_not_read_everything_again(style, warehouse):
    paginators = {
        "cursor": ("/cursor/items", "items", {"type": "cursor", "cursor_path": "next_cursor", "limit": 10,
                                               "limit_param": "limit"}),
        "json_link": ("/fhir/items", "entry[*].resource", {"type": "json_link", "limit": 10, "limit_param": "_count",
                                                            "next_url_path": "link[relation=next].url"}),
    }
    path, selector, paginator = paginators[style]
    demo = DemoSource(collections={"items": ListCollection(simple_records(30))})

    def before_commit(conn, skip, _with_checkpoint):
        if skip == 20:
            refuse_success(conn, warehouse)

    with ServerThread(demo) as server:
        spec = spec_with(server.url, path, paginator, selector=selector)
        with pytest.raises(WarehouseError):
            extract(spec, warehouse, interval=0, hooks=ExtractHooks(before_commit=before_commit))
        (row,) = warehouse.runs("items")
        assert (row.checkpoint.skip, row.checkpoint.exhausted) == (30, True)
        on = f" ON {warehouse.table('dw_etl_runs')}" if warehouse.dialect == "postgresql" else ""
        with warehouse.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TRIGGER refuse_success{on}")
        demo.clear_requests()
        result = extract(spec, warehouse)
        assert demo.requests(path) == []
    assert (result.records_loaded, result.records_fetched) == (30, 0)
    assert warehouse.run(row.run_id).status is RunStatus.SUCCESS


def test_a_rotated_credential_still_resumes_the_run(warehouse):
    demo = DemoSource(collections={"items": ListCollection(simple_records(60))}, latency_seconds=0.2)
    with ServerThread(demo) as server:
        spec = spec_with(server.url, "/items", {"type": "offset", "offset_param": "skip", "limit": 10,
                                                 "total_path": "total"}, params={"api_key": "${API_KEY}"})
        spec = type(spec)(**{**spec.__dict__, "max_in_flight": 1})
        with pytest.raises(JobTimeoutError):
            extract(spec, warehouse, timeout=0.5, environ={"API_KEY": "key-old-0001"})
        (row,) = warehouse.runs("items")
        assert "resolved_params_digest" not in row.parameters
        stopped = row.checkpoint.skip
        result = extract(spec, warehouse, environ={"API_KEY": "key-new-0002"})
    assert (result.run_id, result.resumed_from_skip) == (row.run_id, stopped)
    assert stored_ids(warehouse) == list(range(1, 61))


def test_a_page_number_resume_under_another_limit_starts_over_instead_of_skipping(warehouse):
    demo = DemoSource(collections={"items": ListCollection(simple_records(100))})
    with ServerThread(demo) as server:
        paged = {"type": "page_number", "page_param": "page", "limit_param": "per_page", "limit": 10}
        hooks = ExtractHooks(before_commit=lambda conn, skip, _c: (_ for _ in ()).throw(RuntimeError("crash"))
                             if skip == 30 else None)
        with pytest.raises(RuntimeError):
            extract(spec_with(server.url, "/paged/items", paged), warehouse, hooks=hooks)
        extract(spec_with(server.url, "/paged/items", {**paged, "limit": 25}), warehouse)
    first, second = warehouse.runs("items")
    assert first.status is RunStatus.FAILED and first.error_message.startswith("superseded: parameters changed")
    assert "paginator.limit: 10 -> 25" in first.error_message
    assert second.status is RunStatus.SUCCESS and stored_ids(warehouse) == list(range(1, 101))


def test_a_cursor_that_stays_the_same_is_followed_when_stop_on_repeat_is_off(warehouse):
    pages = {"first": (simple_records(10, 1), {"next_cursor": "scroll-1"})}
    served = iter([simple_records(10, 11), simple_records(10, 21), []])

    async def endpoint(request: Request) -> JSONResponse:
        if request.query_params.get("cursor") is None:
            return JSONResponse({"items": pages["first"][0], "next_cursor": "scroll-1"})
        return JSONResponse({"items": next(served), "next_cursor": "scroll-1"})

    with AppServer(Starlette(routes=[Route("/x", endpoint)])) as server:
        spec = spec_with(server.url, "/x", {"type": "cursor", "cursor_path": "next_cursor", "stop_on_repeat": False})
        result = extract(spec, warehouse)
    assert stored_ids(warehouse) == list(range(1, 31)) and result.warnings == []


@pytest.mark.parametrize(
    ("paginator", "params", "message"),
    [
        ({"type": "offset", "offset_param": "skip"}, {"skip": 5},
         "key 'endpoint.params.skip': is sent by the paginator (offset_param); remove it here"),
        ({"type": "cursor", "cursor_path": "n"}, {"cursor": "x"},
         "key 'endpoint.params.cursor': is sent by the paginator (cursor_param); remove it here"),
        ({"type": "page_number", "limit_param": "per_page"}, {"per_page": 5},
         "key 'endpoint.params.per_page': is sent by the paginator (limit_param); remove it here"),
    ],
)
def test_a_parameter_the_paginator_sends_cannot_also_be_an_endpoint_parameter(paginator, params, message):
    document = {"client": {"base_url": "http://127.0.0.1:9", "paginator": paginator},
                "resources": [{"name": "items", "primary_key": "id", "endpoint": {"path": "/x", "params": params}}]}
    with pytest.raises(SpecError) as raised:
        parse_extracts(document, source_file="x.yaml")
    assert str(raised.value) == "x.yaml: resource 'items': " + message
