"""Every paging style end to end, against real servers: the demo source's page-number, cursor and
FHIR-bundle endpoints, json-server 0.17.4's ``Link`` header and json-server 1.0's envelope. Each
style stops and resumes exactly where it stopped, and no source that repeats itself can loop a
run (field case C2 and its siblings for links and cursors)."""

import json
from dataclasses import replace

import dagster as dg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from etl_assets.checkpoints import RunStatus
from etl_assets.defs.assets import build_extract_asset
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.demo.records import patient
from etl_assets.errors import SourceHTTPError
from etl_assets.extract import ExtractHooks
from etl_assets.sources.spec import PaginatorSpec, parse_extracts
from etl_assets_tests.support import AppServer, extract, items_spec, simple_records
from etl_assets_tests.test_json_server import start_json_server, stop


def spec_with(url: str, path: str, paginator: dict, *, selector: str = "items", params: dict | None = None):
    (spec,) = parse_extracts(
        {
            "client": {"base_url": url, "paginator": paginator,
                       "retries": {"max_attempts": 2, "backoff_seconds": 0.01}},
            "resources": [{"name": "items", "primary_key": "id",
                           "endpoint": {"path": path, "data_selector": selector, "params": params or {}}}],
        },
        source_file="paging.yaml",
    )
    return spec


def stored_ids(warehouse, name: str = "items") -> list:
    return sorted(int(k) for k in warehouse.records(name))


def skips(source: DemoSource, path: str) -> list[int]:
    return [r.skip for r in source.requests(path)]


# -- field case C2: a page past the end repeats the last page ------------------------------

PAGED = {"type": "page_number", "page_param": "page", "limit_param": "per_page", "limit": 10}
C2_WARNING = (
    "extract 'items': loop guard: the page at skip=20 (page 3) is not written and the run stops: "
    "it brought no record not already read in this run"
)


@pytest.fixture
def c2_source():
    demo = DemoSource(collections={"items": ListCollection(simple_records(20))}, repeat_last_page=True)
    with ServerThread(demo) as server:
        yield server


def test_c2_a_repeated_last_page_stops_the_run_after_three_requests(c2_source, warehouse):
    result = extract(spec_with(c2_source.url, "/paged/items", PAGED), warehouse)

    assert skips(c2_source.source, "/paged/items") == [0, 10, 20]  # page 3 asks from skip 20
    assert stored_ids(warehouse) == list(range(1, 21))
    assert (result.inserted, result.updated, result.unchanged, result.pages) == (20, 0, 0, 2)
    assert result.warnings == [C2_WARNING]
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.SUCCESS and row.records_loaded == 20 and row.checkpoint is None
    assert row.run_context["warnings"] == [C2_WARNING]


def test_c2_the_hard_cap_stops_an_endless_loop_without_the_repeat_rule(c2_source, warehouse):
    paginator = {**PAGED, "stop_on_repeat": False, "max_pages_without_progress": 3}
    result = extract(spec_with(c2_source.url, "/paged/items", paginator), warehouse)

    assert skips(c2_source.source, "/paged/items") == [0, 10, 20, 30, 40]
    assert stored_ids(warehouse) == list(range(1, 21))
    # Pages 3 and 4 repeat page 2 and are written as unchanged; the third repeat stops the run.
    assert (result.inserted, result.updated, result.unchanged, result.pages) == (20, 0, 20, 4)
    assert result.warnings == [
        "extract 'items': loop guard: the page at skip=40 (page 5) is not written and the run stops: "
        "3 pages in a row brought no record not already read in this run (max_pages_without_progress=3)"
    ]
    assert warehouse.runs("items")[0].status is RunStatus.SUCCESS


def test_c2_the_loop_guard_warning_reaches_the_materialization_metadata(c2_source, warehouse):
    result = dg.materialize(
        [build_extract_asset(spec_with(c2_source.url, "/paged/items", PAGED))],
        resources={"checkpoints": CheckpointStoreResource(database_url=warehouse.url,
                                                          warehouse_schema=warehouse.schema)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["warnings"].value == [C2_WARNING]
    assert event.materialization.metadata["records_loaded_total"].value == 20


def test_an_offset_source_that_ignores_skip_is_stopped_at_its_second_page(warehouse):
    class FirstPageForever(ListCollection):
        def page(self, skip: int, limit: int) -> list[dict]:
            return super().page(0, limit)

    demo = DemoSource(collections={"items": FirstPageForever(simple_records(10))}, total_overrides={"items": 0})
    demo.total_overrides.clear()
    with ServerThread(demo) as server:
        spec = replace(items_spec(server.url, limit=10), paginator=PaginatorSpec(
            type="offset", limit=5, offset_param="skip", limit_param="limit"))
        result = extract(spec, warehouse)
        assert skips(demo, "/items") == [0, 5]
    assert stored_ids(warehouse) == [1, 2, 3, 4, 5]
    assert result.warnings == [
        "extract 'items': loop guard: the page at skip=5 (page 2) is not written and the run stops: "
        "it brought no record not already read in this run"
    ]


# -- cursor ----------------------------------------------------------------------------------

CURSOR = {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor", "limit": 10,
          "limit_param": "limit"}


@pytest.fixture
def source45():
    demo = DemoSource(collections={"items": ListCollection(simple_records(45))})
    with ServerThread(demo) as server:
        yield server


def test_cursor_paging_fails_at_a_page_and_resumes_from_its_cursor(source45, warehouse):
    source45.source.add_fault(Fault(path="/cursor/items", skip=20, status=404))
    spec = spec_with(source45.url, "/cursor/items", CURSOR)
    with pytest.raises(SourceHTTPError):
        extract(spec, warehouse)
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.FAILED
    assert row.run_context["checkpoint"]["cursor"] == "c-14"  # 0x14: the record after the first 20
    assert (row.checkpoint.skip, row.checkpoint.page_index, row.checkpoint.cursor) == (20, 2, "c-14")
    assert stored_ids(warehouse) == list(range(1, 21))

    source45.source.clear_requests()
    result = extract(spec, warehouse)
    assert skips(source45.source, "/cursor/items") == [20, 30, 40]
    assert (result.run_id, result.inserted, result.records_loaded) == (row.run_id, 25, 45)
    assert stored_ids(warehouse) == list(range(1, 46))
    assert warehouse.run(row.run_id).checkpoint is None


def pointer_app(pages: dict[str, tuple[list[dict], dict]]) -> Starlette:
    """A tiny API whose pages and next pointers a test writes out by hand."""
    requests: list[str] = []

    queries: list[dict[str, str]] = []

    async def endpoint(request: Request) -> JSONResponse:
        key = request.query_params.get("cursor") or request.query_params.get("p") or "first"
        requests.append(key)
        queries.append(dict(request.query_params))
        items, extra = pages[key]
        if isinstance(extra, int):
            return JSONResponse({"error": "injected"}, status_code=extra)
        return JSONResponse({"items": items, **extra})

    app = Starlette(routes=[Route("/x", endpoint)])
    app.state.requests = requests
    app.state.queries = queries
    return app


def test_a_cursor_that_comes_back_stops_the_run_after_writing_its_page(warehouse):
    app = pointer_app({
        "first": (simple_records(10, 1), {"next_cursor": "a"}),
        "a": (simple_records(10, 11), {"next_cursor": "b"}),
        "b": (simple_records(10, 21), {"next_cursor": "a"}),
    })
    with AppServer(app) as server:
        result = extract(spec_with(server.url, "/x", {**CURSOR, "limit_param": None}), warehouse)
    assert app.state.requests == ["first", "a", "b"]
    assert stored_ids(warehouse) == list(range(1, 31))
    assert result.warnings == [
        "extract 'items': loop guard: the cursor after page 3 was already followed in this run ('a'); "
        "the source repeats itself, so the run stops here"
    ]
    assert warehouse.runs("items")[0].status is RunStatus.SUCCESS


# -- json_link: a FHIR search bundle ------------------------------------------------------------

FHIR = {"type": "json_link", "next_url_path": "link[relation=next].url", "limit": 10, "limit_param": "_count",
        "total_path": "total"}


def test_fhir_bundle_next_links_fail_at_a_page_and_resume_from_the_stored_link(source45, warehouse, monkeypatch):
    monkeypatch.setenv("ETL_TEST_FHIR_KEY", "key-7c1e-fhir-secret")
    source45.source.add_fault(Fault(path="/fhir/items", skip=20, status=404))
    spec = spec_with(source45.url, "/fhir/items", FHIR, selector="entry[*].resource",
                     params={"api_key": "${ETL_TEST_FHIR_KEY}"})
    with pytest.raises(SourceHTTPError):
        extract(spec, warehouse, environ={"ETL_TEST_FHIR_KEY": "key-7c1e-fhir-secret"})
    (row,) = warehouse.runs("items")
    # The demo's next links carry no api_key; the spec's own parameters never go into a checkpoint.
    assert row.checkpoint.next_url == f"{source45.url}/fhir/items?_count=10&_offset=20"
    assert (row.checkpoint.skip, row.checkpoint.page_index) == (20, 2)
    assert "key-7c1e" not in json.dumps(row.run_context)
    assert stored_ids(warehouse) == list(range(1, 21))

    source45.source.clear_requests()
    result = extract(spec, warehouse, environ={"ETL_TEST_FHIR_KEY": "key-7c1e-fhir-secret"})
    assert skips(source45.source, "/fhir/items") == [20, 30, 40]
    assert (result.inserted, result.records_loaded, result.source_total) == (25, 45, 45)
    assert stored_ids(warehouse) == list(range(1, 46))


def test_a_next_link_to_itself_stops_the_run_after_writing_its_page(warehouse):
    app = pointer_app({
        "first": (simple_records(10, 1), {"next": "/x?p=2"}),
        "2": (simple_records(10, 11), {"next": "/x?p=2"}),
    })
    with AppServer(app) as server:
        result = extract(spec_with(server.url, "/x", {"type": "json_link", "next_url_path": "next"}), warehouse)
        assert result.warnings == [
            f"extract 'items': loop guard: the next link after page 2 was already followed in this run "
            f"('{server.url}/x?p=2'); the source repeats itself, so the run stops here"
        ]
    assert app.state.requests == ["first", "2"]
    assert stored_ids(warehouse) == list(range(1, 21))


def test_a_next_link_to_another_host_is_refused(warehouse):
    app = pointer_app({"first": (simple_records(10, 1), {"next": "http://127.0.0.2:9/x?p=2"})})
    with AppServer(app) as server:
        with pytest.raises(SourceHTTPError) as raised:
            extract(spec_with(server.url, "/x", {"type": "json_link", "next_url_path": "next"}), warehouse)
    assert str(raised.value) == (
        "extract 'items': the source's next link points to http://127.0.0.2:9/x, another host than "
        "client.base_url; its credentials are not sent there"
    )
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.FAILED and row.checkpoint.next_url == "http://127.0.0.2:9/x?p=2"
    assert stored_ids(warehouse) == list(range(1, 11))


KEY = "key-51d0-link-secret"


def test_a_credential_echoed_in_next_links_is_never_stored_and_still_sent_after_a_resume(warehouse):
    pages = {
        "first": (simple_records(10, 1), {"next": f"/x?p=2&api_key={KEY}"}),
        "2": (simple_records(10, 11), {"next": f"/x?p=3&api_key={KEY}"}),
        "3": ([], 404),
    }
    app = pointer_app(pages)
    spec_args = ({"type": "json_link", "next_url_path": "next"},)
    with AppServer(app) as server:
        spec = spec_with(server.url, "/x", *spec_args, params={"api_key": "${ETL_TEST_LINK_KEY}"})
        with pytest.raises(SourceHTTPError):
            extract(spec, warehouse, environ={"ETL_TEST_LINK_KEY": KEY})
        (row,) = warehouse.runs("items")
        assert row.checkpoint.next_url == f"{server.url}/x?p=3"
        assert KEY not in json.dumps(row.run_context) and KEY not in (row.error_message or "")
        pages["3"] = (simple_records(10, 21), {})
        extract(spec, warehouse, environ={"ETL_TEST_LINK_KEY": KEY})
    assert [q.get("api_key") for q in app.state.queries] == [KEY] * 4
    assert app.state.requests == ["first", "2", "3", "3"]
    assert stored_ids(warehouse) == list(range(1, 31))


def test_a_next_link_with_a_credential_under_another_name_cannot_be_checkpointed(warehouse):
    app = pointer_app({"first": (simple_records(10, 1), {"next": f"/x?p=2&token={KEY}"})})
    with AppServer(app) as server:
        spec = spec_with(server.url, "/x", {"type": "json_link", "next_url_path": "next"},
                         params={"api_key": "${ETL_TEST_LINK_KEY}"})
        with pytest.raises(Exception) as raised:
            extract(spec, warehouse, environ={"ETL_TEST_LINK_KEY": KEY})
        assert str(raised.value) == (
            f"extract 'items', skip=0: the source's next link carries a credential outside the spec's own "
            f"parameters ({server.url}/x?p=2&token=***); it cannot be stored in a checkpoint"
        )
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.FAILED and KEY not in json.dumps(row.run_context)
    assert stored_ids(warehouse) == []


# -- json-server: the Link header (0.17.4) and the page envelope (1.0.0-beta.15) -----------------

PATIENTS = 257


@pytest.fixture(scope="module")
def patients_db(tmp_path_factory):
    records = [patient(i) for i in range(PATIENTS)]
    db = tmp_path_factory.mktemp("paging") / "db.json"
    db.write_text(json.dumps({"Patient": records}, ensure_ascii=False))
    return db, records


def crash_at_page(index: int) -> ExtractHooks:
    """Fail the run inside the commit of its ``index``-th page (1-based): that page is not stored."""
    seen: list[int] = []

    def before_commit(conn, skip, _with_checkpoint):
        seen.append(skip)
        if len(seen) == index:
            raise RuntimeError("injected crash")

    return ExtractHooks(before_commit=before_commit)


def patients_spec(url: str, paginator: dict, *, selector: str, params: dict | None = None):
    (spec,) = parse_extracts(
        {
            "client": {"base_url": url, "paginator": paginator},
            "resources": [{"name": "patients", "primary_key": "id",
                           "endpoint": {"path": "/Patient", "data_selector": selector, "params": params or {}}}],
        },
        source_file="json-server.yaml",
    )
    return spec


def test_json_server_0_17_link_header_crash_and_resume(patients_db, warehouse):
    db, records = patients_db
    process, url = start_json_server(db)
    try:
        spec = patients_spec(url, {"type": "header_link", "limit": 50, "limit_param": "_limit"},
                             selector="$", params={"_page": 1})
        with pytest.raises(RuntimeError, match="injected crash"):
            extract(spec, warehouse, hooks=crash_at_page(3))
        (row,) = warehouse.runs("patients")
        assert (row.status, row.checkpoint.skip, row.checkpoint.page_index) == (RunStatus.FAILED, 100, 2)
        assert row.checkpoint.next_url == f"{url}/Patient?_page=3&_limit=50"
        assert len(warehouse.records("patients")) == 100
        result = extract(spec, warehouse)
    finally:
        stop(process)
    assert (result.run_id, result.pages, result.records_fetched, result.inserted) == (row.run_id, 4, 157, 157)
    assert warehouse.records("patients") == {r["id"]: r for r in records}
    assert warehouse.run(row.run_id).records_loaded == PATIENTS


def test_json_server_1_0_page_envelope_crash_and_resume(patients_db, warehouse):
    db, records = patients_db
    process, url = start_json_server(db, version="1.0.0-beta.15")
    try:
        spec = patients_spec(url, {"type": "page_number", "page_param": "_page", "limit": 50,
                                   "limit_param": "_per_page", "total_path": "pages", "total_is": "pages"},
                             selector="data")
        with pytest.raises(RuntimeError, match="injected crash"):
            extract(spec, warehouse, hooks=crash_at_page(4))
        (row,) = warehouse.runs("patients")
        assert (row.status, row.checkpoint.skip, row.checkpoint.page_index) == (RunStatus.FAILED, 150, 3)
        result = extract(spec, warehouse)
    finally:
        stop(process)
    assert (result.pages, result.records_fetched, result.inserted, result.source_total) == (3, 107, 107, 6)
    assert result.warnings == []
    assert warehouse.records("patients") == {r["id"]: r for r in records}


def test_json_server_1_0_repeats_its_last_page_and_the_guard_stops_it(patients_db, warehouse):
    db, records = patients_db
    process, url = start_json_server(db, version="1.0.0-beta.15")
    try:
        # No total and no page size the paginator knows of: only the repeated page 7 ends it.
        spec = patients_spec(url, {"type": "page_number", "page_param": "_page"}, selector="data",
                             params={"_per_page": 50})
        result = extract(spec, warehouse)
    finally:
        stop(process)
    assert (result.pages, result.records_fetched, result.inserted, result.updated) == (6, 257, 257, 0)
    assert result.warnings == [
        "extract 'patients': loop guard: the page at skip=257 (page 7) is not written and the run stops: "
        "it brought no record not already read in this run"
    ]
    assert warehouse.records("patients") == {r["id"]: r for r in records}


def test_keyset_paging_fails_at_a_page_and_resumes_after_the_last_stored_key(source45, warehouse):
    keyset = {"type": "keyset", "cursor_path": "id", "cursor_param": "id_gt", "limit": 10, "limit_param": "limit"}
    spec = spec_with(source45.url, "/keyset/items", keyset)
    with pytest.raises(RuntimeError, match="injected crash"):
        extract(spec, warehouse, hooks=crash_at_page(3))
    (row,) = warehouse.runs("items")
    assert (row.status, row.checkpoint.skip, row.checkpoint.page_index, row.checkpoint.cursor) == (
        RunStatus.FAILED, 20, 2, "20")
    assert stored_ids(warehouse) == list(range(1, 21))

    source45.source.clear_requests()
    result = extract(spec, warehouse)
    # The demo logs a keyset request's id_gt as its skip. A short page is not taken as the last
    # (an API may cap its pages): an empty one ends the run.
    assert skips(source45.source, "/keyset/items") == [20, 30, 40, 45]
    assert (result.run_id, result.inserted, result.records_loaded) == (row.run_id, 25, 45)
    assert stored_ids(warehouse) == list(range(1, 46))
