"""A source that changes underneath a long extract: offset paging notices its total move and
re-reads what it passed; keyset paging cannot drift. Both against real servers: the demo
source, and json-server 0.17.4 with records deleted over HTTP in the middle of the run."""

import json

import httpx
import pytest

from etl_assets.checkpoints import RunStatus
from etl_assets.demo import DemoSource, ListCollection, ServerThread
from etl_assets.extract import ExtractHooks
from etl_assets.sources.spec import parse_extracts
from etl_assets_tests.support import extract, simple_records
from etl_assets_tests.test_json_server import start_json_server, stop


class ShrinksAfter(ListCollection):
    """Loses its first ``lost`` records right after serving the page at ``after_skip``."""

    def __init__(self, records, after_skip: int, lost: int) -> None:
        super().__init__(records)
        self.after_skip, self.lost = after_skip, lost

    def page(self, skip: int, limit: int) -> list[dict]:
        items = super().page(skip, limit)
        if skip == self.after_skip and self.lost:
            self.replace(self.page(0, 10**9)[self.lost:])
            self.lost = 0
        return items


def offset_spec(url: str, path: str = "/items", **paginator):
    (spec,) = parse_extracts(
        {
            "client": {"base_url": url, "max_in_flight": 1,
                       "paginator": {"type": "offset", "limit": 10, "offset_param": "skip", "limit_param": "limit",
                                     "total_path": "total", **paginator}},
            "resources": [{"name": "items", "primary_key": "id", "endpoint": {"path": path, "data_selector": "items"}}],
        },
        source_file="drift.yaml",
    )
    return spec


def test_records_deleted_mid_run_are_recovered_by_one_re_read(warehouse):
    records = simple_records(50)
    demo = DemoSource(collections={"items": ShrinksAfter(records, after_skip=20, lost=5)})
    with ServerThread(demo) as server:
        result = extract(offset_spec(server.url), warehouse)
        asked = [r.skip for r in demo.requests("/items")]
    # First pass: 0-20 see 50 records; 30 and 40 see 45, so records 31..35 slid below skip=30.
    assert asked == [0, 10, 20, 30, 40, 0, 10, 20, 30]
    assert sorted(int(k) for k in warehouse.records("items")) == list(range(1, 51))
    assert (result.inserted, result.updated, result.unchanged) == (50, 0, 35)
    assert result.warnings == [
        "extract 'items': the source's total moved during the run (50 at the start, 45 at the end, first change "
        "seen at skip=30): offset paging may have skipped or repeated records; re-reading skip=0 to 40",
        "extract 'items': the re-read of skip=0 to 40 found 5 records the first pass had missed and 0 changed since",
    ]
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.SUCCESS and row.records_loaded == 45
    assert row.run_context["drift"] == {
        "total_at_start": 50, "total_at_end": 45, "changes": [{"skip": 30, "from": 50, "to": 45}],
        "last_change_skip": 30, "status": "reread", "reread_to": 40, "reread_totals": [45, 45],
        "reread_found": 5, "reread_changed": 0,
    }
    assert result.drift == row.run_context["drift"]


def test_a_total_that_keeps_moving_during_the_re_read_is_reported_unresolved(warehouse):
    class KeepsShrinking(ListCollection):
        def page(self, skip: int, limit: int) -> list[dict]:
            items = super().page(skip, limit)
            if skip == 20 and len(self) > 30:
                self.replace(self.page(0, 10**9)[1:])
            return items

    demo = DemoSource(collections={"items": KeepsShrinking(simple_records(50))})
    with ServerThread(demo) as server:
        result = extract(offset_spec(server.url), warehouse)
    assert result.warnings[-1].endswith(
        "; the total moved again during the re-read (49 -> 48): records may still be missing. Use keyset paging "
        "or a stable order_by parameter, or run again when the source is quiet"
    )
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.SUCCESS and row.run_context["drift"]["status"] == "unresolved"


def test_a_quiet_source_records_its_total_and_reads_nothing_twice(warehouse):
    demo = DemoSource(collections={"items": ListCollection(simple_records(30))})
    with ServerThread(demo) as server:
        result = extract(offset_spec(server.url), warehouse)
        assert [r.skip for r in demo.requests("/items")] == [0, 10, 20]
    assert result.warnings == [] and result.drift is None
    (row,) = warehouse.runs("items")
    assert row.run_context["drift"] == {"total_at_start": 30, "changes": [], "total_at_end": 30}


@pytest.fixture
def json_server_db(tmp_path):
    db = tmp_path / "db.json"
    db.write_text(json.dumps({"items": simple_records(50)}))
    return db


def delete_at(url: str, skip_to_commit: int, ids: range) -> ExtractHooks:
    """Delete records over HTTP while the page at ``skip_to_commit`` is being written."""

    def before_commit(conn, skip, _with_checkpoint):
        if skip == skip_to_commit:
            for i in ids:
                assert httpx.delete(f"{url}/items/{i}").status_code == 200

    return ExtractHooks(before_commit=before_commit)


def json_server_spec(url: str, paginator: dict, params: dict | None = None):
    (spec,) = parse_extracts(
        {
            "client": {"base_url": url, "max_in_flight": 1, "paginator": paginator},
            "resources": [{"name": "items", "primary_key": "id",
                           "endpoint": {"path": "/items", "data_selector": "$", "params": params or {}}}],
        },
        source_file="json-server.yaml",
    )
    return spec


def test_json_server_offset_paging_recovers_records_deleted_mid_run(json_server_db, warehouse):
    process, url = start_json_server(json_server_db, writable=True)
    try:
        spec = json_server_spec(url, {"type": "offset", "limit": 10, "offset_param": "_start",
                                      "limit_param": "_limit", "total_header": "X-Total-Count"})
        result = extract(spec, warehouse, hooks=delete_at(url, 10, range(1, 6)))
    finally:
        stop(process)
    assert sorted(int(k) for k in warehouse.records("items")) == list(range(1, 51))
    assert result.drift["status"] == "reread" and result.drift["reread_found"] == 5
    assert (result.drift["total_at_start"], result.drift["total_at_end"]) == (50, 45)


def test_keyset_paging_cannot_drift(warehouse):
    demo = DemoSource(collections={"items": ShrinksAfter(simple_records(50), after_skip=10, lost=5)})
    with ServerThread(demo) as server:
        (spec,) = parse_extracts(
            {
                "client": {"base_url": server.url, "paginator": {
                    "type": "keyset", "limit": 10, "limit_param": "limit", "cursor_path": "id", "cursor_param": "id_gt"}},
                "resources": [{"name": "items", "primary_key": "id",
                               "endpoint": {"path": "/keyset/items", "data_selector": "items"}}],
            },
            source_file="keyset.yaml",
        )
        result = extract(spec, warehouse)
        # The demo logs a keyset request's id_gt as its skip (-1 when absent). Without a total the
        # last full page needs one more request to find the end.
        assert [r.skip for r in demo.requests("/keyset/items")] == [-1, 10, 20, 30, 40, 50]
    assert sorted(int(k) for k in warehouse.records("items")) == list(range(1, 51))
    assert (result.pages, result.records_fetched, result.inserted) == (6, 50, 50)  # the empty page counts
    assert result.warnings == [] and result.drift is None
    (row,) = warehouse.runs("items")
    assert row.status is RunStatus.SUCCESS and "drift" not in row.run_context
