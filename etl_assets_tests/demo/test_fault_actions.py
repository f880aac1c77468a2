"""Each fault action as a real HTTP client sees it."""

import threading
import time

import httpx
import pytest

from etl_assets.demo import DemoSource, Fault, RequestRecord, ServerThread, default_source, patient

DRIP_HEAD = b'{"total": 1000000, "items": [{"id": 0}'


@pytest.fixture(scope="module")
def server():
    with ServerThread(default_source(10)) as running:
        yield running


@pytest.fixture
def source(server) -> DemoSource:
    src = server.source
    src.clear_faults()
    src.clear_requests()
    return src


@pytest.fixture
def client(server, source):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def _wait_for_requests(source: DemoSource, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(source.requests()) < count:
        assert time.monotonic() < deadline, f"the server logged {source.requests()}, expected {count} requests"
        time.sleep(0.01)


def test_status_fault_sends_retry_after_once(client, source):
    source.add_fault(Fault("/patients", status=429, retry_after="7"))

    faulted = client.get("/patients", params={"limit": 2})
    normal = client.get("/patients", params={"limit": 2})

    assert faulted.status_code == 429
    assert faulted.headers["retry-after"] == "7"
    assert faulted.headers["content-type"] == "application/json"
    assert faulted.json() == {"error": "injected fault: HTTP 429"}
    assert normal.status_code == 200
    assert normal.json() == {"total": 10, "items": [patient(0), patient(1)]}
    assert source.requests() == [
        RequestRecord("/patients", 0, 2, 429, "status"),
        RequestRecord("/patients", 0, 2, 200, "data"),
    ]
    assert source.faults() == []


def test_retry_after_is_sent_verbatim_and_only_when_set(client, source):
    source.add_fault(Fault("/patients", status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))
    source.add_fault(Fault("/patients", status=504))

    dated = client.get("/patients")
    bare = client.get("/patients")

    assert (dated.status_code, dated.headers["retry-after"]) == (503, "Wed, 21 Oct 2015 07:28:00 GMT")
    assert bare.status_code == 504
    assert "retry-after" not in bare.headers
    assert bare.json() == {"error": "injected fault: HTTP 504"}


def test_times_counts_matching_requests(client, source):
    source.add_fault(Fault("/patients", times=2, status=500))
    source.add_fault(Fault("/encounters", times=None, status=404))

    patients = [client.get("/patients").status_code for _ in range(3)]
    encounters = [client.get("/encounters").status_code for _ in range(3)]

    assert patients == [500, 500, 200]
    assert encounters == [404, 404, 404]
    assert [(f.path, f.times) for f in source.faults()] == [("/encounters", None)]


def test_skip_selects_the_faulted_page(client, source):
    source.add_fault(Fault("/patients", skip=5, status=503))

    statuses = [client.get("/patients", params={"skip": skip, "limit": 5}).status_code for skip in (0, 5, 5)]
    other_path = client.get("/encounters", params={"skip": 5}).status_code

    assert statuses == [200, 503, 200]
    assert other_path == 200


def test_faults_apply_before_validation(client, source):
    source.add_fault(Fault("/nope", status=500))
    source.add_fault(Fault("/patients", status=502))

    unknown = client.get("/nope")
    invalid = client.get("/patients", params={"limit": "many"})

    assert (unknown.status_code, invalid.status_code) == (500, 502)
    assert source.requests() == [
        RequestRecord("/nope", 0, 100, 500, "status"),
        RequestRecord("/patients", 0, -1, 502, "status"),
    ]


def test_malformed_sends_the_body_verbatim(client, source):
    source.add_fault(Fault("/patients", action="malformed"))
    source.add_fault(
        Fault("/patients", action="malformed", body="<html><body>Bad gateway</body></html>", content_type="text/html")
    )

    truncated = client.get("/patients")
    html = client.get("/patients")

    assert truncated.status_code == 200
    assert truncated.headers["content-type"] == "application/json"
    assert truncated.text == '{"total": 3, "items": [1, 2'
    assert html.status_code == 200
    assert html.headers["content-type"] == "text/html"
    assert html.text == "<html><body>Bad gateway</body></html>"
    assert [r.action for r in source.requests()] == ["malformed", "malformed"]


def test_hang_times_out_a_client(server, source):
    source.add_fault(Fault("/patients", action="hang"))

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.url}/patients", timeout=httpx.Timeout(5.0, read=0.5))

    assert time.monotonic() - started >= 0.5
    assert source.requests() == [RequestRecord("/patients", 0, 100, 0, "hang")]


def test_hang_does_not_block_other_requests(client, server, source):
    source.add_fault(Fault("/patients", skip=1, action="hang"))
    outcome: list[BaseException] = []

    def hang() -> None:
        try:
            httpx.get(f"{server.url}/patients?skip=1", timeout=httpx.Timeout(5.0, read=1.5))
        except BaseException as exc:
            outcome.append(exc)

    hanging = threading.Thread(target=hang)
    hanging.start()
    try:
        _wait_for_requests(source, 1)
        meanwhile = [client.get("/patients", params={"skip": 2, "limit": 1}) for _ in range(3)]
        still_hanging = hanging.is_alive()
    finally:
        hanging.join()

    assert [r.json()["items"] for r in meanwhile] == [[patient(2)]] * 3
    assert still_hanging
    assert [type(exc) for exc in outcome] == [httpx.ReadTimeout]


def test_drip_sends_headers_then_a_byte_at_a_time(server, source):
    source.add_fault(Fault("/patients", action="drip", drip_interval=0.4))
    received = b""

    with httpx.Client(timeout=httpx.Timeout(5.0, read=1.0)) as http:
        with http.stream("GET", f"{server.url}/patients") as response:
            status, content_type = response.status_code, response.headers["content-type"]
            started = time.monotonic()
            for chunk in response.iter_raw():
                received += chunk
                if time.monotonic() - started >= 1.0:
                    break
            elapsed = time.monotonic() - started

    assert (status, content_type) == (200, "application/json")
    assert "content-length" not in response.headers
    assert received == DRIP_HEAD[: len(received)]
    assert 1 <= len(received) <= 2 + int(elapsed / 0.4)
    assert source.requests() == [RequestRecord("/patients", 0, 100, 200, "drip")]


def test_drop_closes_the_connection_without_a_response(client, source):
    source.add_fault(Fault("/patients", action="drop"))

    with pytest.raises(httpx.RemoteProtocolError) as caught:
        client.get("/patients", params={"limit": 1})
    after = client.get("/patients", params={"limit": 1})

    assert str(caught.value) == "Server disconnected without sending a response."
    assert after.json() == {"total": 10, "items": [patient(0)]}
    assert source.requests() == [
        RequestRecord("/patients", 0, 1, 0, "drop"),
        RequestRecord("/patients", 0, 1, 200, "data"),
    ]


def test_status_faults_without_a_body(client, source):
    source.add_fault(Fault("/patients", status=204))
    source.add_fault(Fault("/patients", status=304))

    no_content = client.get("/patients")
    not_modified = client.get("/patients")

    assert (no_content.status_code, no_content.content) == (204, b"")
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    assert [r.status for r in source.requests()] == [204, 304]
