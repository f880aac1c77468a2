"""Pages fetched ahead: the rate-limit gate shared by requests in flight, a page size the
source caps, and pages written strictly in order, against a real server on loopback."""

import asyncio
import time
from dataclasses import replace

import orjson
import pytest

from etl_assets.checkpoints import RunStatus
from etl_assets.errors import SourceHTTPError
from etl_assets_tests.support import AppServer, extract, items_spec, simple_records


class RecordingSource:
    """An offset source that logs (arrival time, skip, status) and answers from a script."""

    def __init__(self, records: list[dict], *, cap: int | None = None) -> None:
        self.records = records
        self.cap = cap
        self.log: list[tuple[float, int, int]] = []
        self.script: dict[int, list[tuple[int, dict[str, str], float]]] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
        skip, limit = int(query["skip"]), int(query["limit"])
        arrived = time.monotonic()
        status, headers, delay = 200, {}, 0.0
        if self.script.get(skip):
            status, headers, delay = self.script[skip].pop(0)
        self.log.append((arrived, skip, status))
        if delay:
            await asyncio.sleep(delay)
        if status == 200:
            size = min(limit, self.cap or limit)
            body = orjson.dumps({"total": len(self.records), "items": self.records[skip : skip + size]})
        else:
            body = b'{"error": "slow down"}'
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")] + [(k.encode(), v.encode()) for k, v in headers.items()],
        })
        await send({"type": "http.response.body", "body": body})


def ids(warehouse):
    return sorted(int(k) for k in warehouse.records("items"))


def test_retry_after_holds_every_request_in_flight(warehouse):
    """A 429 with Retry-After: 2 on one page also holds the retry of another page that
    failed at the same time, though that page's own backoff would be 0.05 s."""
    source = RecordingSource(simple_records(60))
    source.script[10] = [(429, {"Retry-After": "2"}, 0.0)]
    # Answered 1 s after the 429 (both were asked for together), which leaves a busy machine
    # ample time to read the 429 and set the gate first; without the gate the retry would
    # come about 1.05 s after the 429, with it 2 s after.
    source.script[20] = [(503, {}, 1.0)]
    with AppServer(source) as server:
        result = extract(items_spec(server.url, limit=10), warehouse)
    limited_at = next(t for t, skip, status in source.log if status == 429)
    retried_20 = [t for t, skip, status in source.log if skip == 20 and status == 200]
    assert len(retried_20) == 1 and retried_20[0] - limited_at >= 1.95
    assert sorted(skip for _, skip, _ in source.log) == [0, 10, 10, 20, 20, 30, 40, 50]
    assert ids(warehouse) == list(range(1, 61))
    assert warehouse.run(result.run_id).status is RunStatus.SUCCESS


def test_capped_page_size_with_pages_in_flight_loses_nothing(warehouse):
    """The source serves 7 rows whatever limit is asked: pages asked ahead at the planned
    stride start at the wrong record and are dropped; skip follows the rows received."""
    source = RecordingSource(simple_records(100), cap=7)
    with AppServer(source) as server:
        result = extract(items_spec(server.url, limit=25), warehouse)
    assert ids(warehouse) == list(range(1, 101))
    assert (result.records_fetched, result.inserted, result.updated, result.duplicates) == (100, 100, 0, 0)
    assert warehouse.run(result.run_id).records_loaded == 100
    # every record position 0, 7, 14, ... 98 was asked for at least once
    assert set(range(0, 100, 7)) <= {skip for _, skip, _ in source.log}


def test_sequential_when_max_in_flight_is_one(warehouse):
    source = RecordingSource(simple_records(50))
    with AppServer(source) as server:
        spec = replace(items_spec(server.url, limit=10), max_in_flight=1)
        extract(spec, warehouse)
    assert [skip for _, skip, _ in source.log] == [0, 10, 20, 30, 40]
    assert ids(warehouse) == list(range(1, 51))


def test_credentials_never_follow_a_redirect_to_another_host(warehouse):
    """httpx drops only Authorization on a cross-host redirect; an X-Api-Key would go along.
    With secrets configured, a redirect to another host fails the run and sends nothing there."""
    elsewhere = RecordingSource(simple_records(10))
    seen_headers: list[dict] = []

    async def redirector(scope, receive, send):
        if scope["type"] != "http":
            return
        location = f"{other.url.replace('127.0.0.1', 'localhost')}/items?{scope['query_string'].decode()}"
        await send({"type": "http.response.start", "status": 302, "headers": [(b"location", location.encode())]})
        await send({"type": "http.response.body", "body": b""})

    async def recording(scope, receive, send):
        seen_headers.append(dict(scope["headers"]))
        await elsewhere(scope, receive, send)

    with AppServer(recording) as other, AppServer(redirector) as server:
        spec = replace(items_spec(server.url, limit=10), headers={"X-Api-Key": "${REDIRECT_KEY}"})
        with pytest.raises(SourceHTTPError) as raised:
            extract(spec, warehouse, environ={"REDIRECT_KEY": "k3y-never-elsewhere"})
    assert "the source redirected to http://localhost:" in str(raised.value)
    assert "another host than client.base_url; its credentials are not sent there" in str(raised.value)
    assert seen_headers == []
    [row] = warehouse.runs("items")
    assert row.status is RunStatus.FAILED and "k3y" not in (row.error_message or "")


def test_a_fetched_page_is_freed_without_the_cyclic_collector(warehouse):
    """httpx's response and its stream point at each other; the client unbinds them, so a
    page's body is freed when the page is done, not whenever the collector next runs (it
    runs rarely during a run, and each body kept alive is a page of data)."""
    import gc

    import httpx

    source = RecordingSource(simple_records(60))
    with AppServer(source) as server:
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            result = extract(items_spec(server.url, limit=10), warehouse)
            gc.collect()
            leftovers = [o for o in gc.garbage if isinstance(o, httpx.Response | httpx.Request)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert result.pages == 6
    assert leftovers == []
