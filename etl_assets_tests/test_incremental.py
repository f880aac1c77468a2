"""Incremental extracts against json-server 0.17.4, which filters with ``updated_at_gte``: the
watermark is the largest ``updated_at`` of the last successful run, a failed run leaves it
alone, and a resume reads the same window."""

import json
from datetime import datetime, timezone
from dataclasses import replace

import dagster as dg
import pytest

from etl_assets.checkpoints import RunStatus
from etl_assets.defs.assets import build_extract_asset
from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.errors import SpecError
from etl_assets.extract import current_parameters
from etl_assets.sources.incremental import later
from etl_assets.sources.spec import parse_extracts
from etl_assets_tests.support import extract
from etl_assets_tests.test_json_server import start_json_server, stop
from etl_assets_tests.test_paging_styles import crash_at_page

START = "2026-01-01T00:00:00Z"


def record(i: int, minute: int, name: str | None = None) -> dict:
    return {"id": i, "name": name or f"n{i}", "updated_at": f"2026-01-01T{minute // 60:02d}:{minute % 60:02d}:00Z"}


def spec_for(url: str):
    (spec,) = parse_extracts(
        {
            "client": {"base_url": url, "paginator": {"type": "offset", "limit": 10, "offset_param": "_start",
                                                      "limit_param": "_limit", "total_header": "X-Total-Count"}},
            "resources": [{"name": "items", "primary_key": "id", "endpoint": {
                "path": "/items", "data_selector": "$",
                "incremental": {"cursor_path": "updated_at", "param": "updated_at_gte", "initial_value": START},
            }}],
        },
        source_file="incremental.yaml",
    )
    return spec


def watermark_now(spec, warehouse):
    return current_parameters(spec, environ={}, store=warehouse.store)["incremental"]["start_value"]


def serve(tmp_path, records: list[dict], name: str, port: int | None = None):
    """json-server over ``records``; pass the port of an earlier one to serve a new version of
    the same source (another base_url would be another stream, with its own watermark)."""
    db = tmp_path / f"{name}.json"
    db.write_text(json.dumps({"items": records}))
    return start_json_server(db, port=port)


def test_each_run_reads_from_the_last_success_and_a_failure_leaves_the_watermark(tmp_path, warehouse):
    first = [record(i, i) for i in range(1, 31)]
    process, url = serve(tmp_path, first, "v1")
    try:
        result = extract(spec_for(url), warehouse)
    finally:
        stop(process)
    assert (result.records_fetched, result.inserted, result.watermark) == (30, 30, "2026-01-01T00:30:00Z")
    (run1,) = warehouse.runs("items")
    assert run1.parameters["incremental"] == {"cursor_path": "updated_at", "param": "updated_at_gte",
                                              "start_value": START}
    assert run1.run_context["incremental"]["watermark"] == "2026-01-01T00:30:00Z"

    # Records 5 and 12 change, 31..35 are new; 30 sits on the watermark and is read again.
    second = [record(i, i) for i in range(1, 36)]
    second[4], second[11] = record(5, 60, "five"), record(12, 65, "twelve")
    port = int(url.rsplit(":", 1)[1])
    process, url = serve(tmp_path, second, "v2", port)
    try:
        assert watermark_now(spec_for(url), warehouse) == "2026-01-01T00:30:00Z"
        result = extract(spec_for(url), warehouse)
    finally:
        stop(process)
    assert (result.records_fetched, result.inserted, result.updated, result.unchanged) == (8, 5, 2, 1)
    assert result.watermark == "2026-01-01T01:05:00Z"
    stored = warehouse.records("items")
    assert stored == {str(r["id"]): r for r in second}

    # A third version; the run fails at its second page: the watermark stays, the resume reads
    # the same window from the checkpoint and then moves it.
    third = second + [record(i, 120 + i) for i in range(36, 61)]
    process, url = serve(tmp_path, third, "v3", port)
    try:
        with pytest.raises(RuntimeError, match="injected crash"):
            extract(spec_for(url), warehouse, hooks=crash_at_page(2))
        failed = warehouse.runs("items")[-1]
        assert failed.status is RunStatus.FAILED and failed.checkpoint.skip == 10
        assert failed.parameters["incremental"]["start_value"] == "2026-01-01T01:05:00Z"
        assert watermark_now(spec_for(url), warehouse) == "2026-01-01T01:05:00Z"
        result = extract(spec_for(url), warehouse)
    finally:
        stop(process)
    assert (result.run_id, result.resumed_from_skip, result.records_fetched) == (failed.run_id, 10, 16)
    assert result.watermark == "2026-01-01T03:00:00Z"  # record 60, at minute 180
    assert warehouse.records("items") == {str(r["id"]): r for r in third}
    assert [r.status for r in warehouse.runs("items")] == [RunStatus.SUCCESS] * 3


def test_another_filter_is_another_stream_with_its_own_watermark(tmp_path, warehouse):
    records = [{**record(i, i), "status": "active" if i % 3 else "archived"} for i in range(1, 31)]
    process, url = serve(tmp_path, records, "filters")
    try:
        active = replace(spec_for(url), params={"status": "active"})
        archived = replace(spec_for(url), params={"status": "archived"})
        first = extract(active, warehouse)
        assert (first.records_fetched, first.watermark) == (20, "2026-01-01T00:29:00Z")
        # The archived records are older than the active stream's watermark: they must not be skipped.
        assert watermark_now(archived, warehouse) == START
        second = extract(archived, warehouse)
    finally:
        stop(process)
    assert (second.records_fetched, second.watermark) == (10, "2026-01-01T00:30:00Z")
    assert watermark_now(active, warehouse) == "2026-01-01T00:29:00Z"


def test_the_watermark_is_in_the_materialization_metadata(tmp_path, warehouse):
    process, url = serve(tmp_path, [record(i, 7 * i) for i in range(1, 4)], "meta")
    try:
        result = dg.materialize(
            [build_extract_asset(spec_for(url))],
            resources={"checkpoints": CheckpointStoreResource(database_url=warehouse.url,
                                                              warehouse_schema=warehouse.schema)},
            instance=dg.DagsterInstance.ephemeral(),
        )
    finally:
        stop(process)
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["watermark"].value == "2026-01-01T00:21:00Z"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("2026-01-01T10:00:00+02:00", "2026-01-01T09:00:00Z", "2026-01-01T09:00:00Z"),  # instants, not text
        (9, 10, 10),
        (9.5, 9, 9.5),
        ("b", "a", "b"),
        (None, "x", "x"),
        ("x", None, "x"),
    ],
)
def test_cursor_values_compare_as_instants_numbers_or_text(a, b, expected):
    assert later(a, b) == expected


@pytest.mark.parametrize(
    ("incremental", "message"),
    [
        ({"param": "since", "initial_value": "x"}, "key 'endpoint.incremental.cursor_path': is required"),
        ({"cursor_path": "u", "param": "since", "initial_value": [1]},
         "key 'endpoint.incremental.initial_value': must be a string or a number"),
        ({"cursor_path": "u", "param": "skip", "initial_value": "x"},
         "key 'endpoint.incremental.param': 'skip' is already sent as offset_param"),
        ({"cursor_path": "u", "param": "q", "initial_value": "x"},
         "key 'endpoint.incremental.param': 'q' is also in endpoint.params"),
        ({"cursor_path": "u", "param": "s;x", "initial_value": "x"},
         "key 'endpoint.incremental.param': must be a plain query parameter name"),
        ({"cursor_path": "u", "param": "since", "initial_value": datetime(2024, 1, 1, tzinfo=timezone.utc)},
         "key 'endpoint.incremental.initial_value': must be a string or a number; YAML read "
         '2024-01-01T00:00:00+00:00 as a date or time, so quote it (initial_value: "2024-01-01T00:00:00+00:00")'),
    ],
)
def test_incremental_mistakes_are_named(incremental, message):
    document = {
        "client": {"base_url": "http://127.0.0.1:9",
                   "paginator": {"type": "offset", "offset_param": "skip", "limit_param": "limit"}},
        "resources": [{"name": "items", "primary_key": "id",
                       "endpoint": {"path": "/items", "params": {"q": 1}, "incremental": incremental}}],
    }
    with pytest.raises(SpecError) as raised:
        parse_extracts(document, source_file="x.yaml")
    assert str(raised.value).startswith("x.yaml: resource 'items': " + message)
