"""The data and control routes over real HTTP, against a server in a background thread."""

import time

import httpx
import pytest

from etl_assets.demo import (
    DemoSource,
    Fault,
    ListCollection,
    RequestRecord,
    ServerThread,
    default_source,
    encounter,
    observation,
    patient,
)

PATIENTS = 10


@pytest.fixture(scope="module")
def server():
    with ServerThread(default_source(PATIENTS)) as running:
        yield running


@pytest.fixture
def source(server) -> DemoSource:
    """The module server's source, reset to its defaults before each test."""
    fresh = default_source(PATIENTS)
    src = server.source
    src.collections.clear()
    src.collections.update(fresh.collections)
    src.latency_seconds = 0.0
    src.max_limit = None
    src.total_overrides.clear()
    src.clear_faults()
    src.clear_requests()
    return src


@pytest.fixture
def client(server, source):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def test_a_page_is_the_generated_records(client):
    response = client.get("/patients", params={"skip": 3, "limit": 4})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-total-count"] == "10"
    assert response.json() == {"total": 10, "items": [patient(i) for i in range(3, 7)]}


def test_pages_cover_the_collection_then_run_dry(client):
    pages = [client.get("/patients", params={"skip": skip, "limit": 4}).json() for skip in (0, 4, 8, 12)]

    assert [[item["id"] for item in page["items"]] for page in pages] == [
        ["pat-00000000", "pat-00000001", "pat-00000002", "pat-00000003"],
        ["pat-00000004", "pat-00000005", "pat-00000006", "pat-00000007"],
        ["pat-00000008", "pat-00000009"],
        [],
    ]
    assert [page["total"] for page in pages] == [10, 10, 10, 10]
    assert client.get("/patients", params={"skip": 10}).json() == {"total": 10, "items": []}
    assert client.get("/patients", params={"limit": 0}).json() == {"total": 10, "items": []}


def test_defaults_are_skip_0_and_limit_100(client, source):
    source.collections["patients"] = ListCollection([{"id": i} for i in range(150)])

    body = client.get("/patients").json()

    assert body["total"] == 150
    assert body["items"] == [{"id": i} for i in range(100)]
    assert source.requests() == [RequestRecord("/patients", 0, 100, 200, "data")]


def test_encounters_and_observations_scale_with_patients(client):
    encounters = client.get("/encounters", params={"skip": 28, "limit": 10})
    observations = client.get("/observations", params={"skip": 48, "limit": 10})

    assert encounters.headers["x-total-count"] == "30"
    assert encounters.json() == {"total": 30, "items": [encounter(28), encounter(29)]}
    assert encounters.json()["items"][-1]["subject"] == {"reference": "Patient/pat-00000009"}
    assert observations.headers["x-total-count"] == "50"
    assert observations.json() == {"total": 50, "items": [observation(48), observation(49)]}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("skip=-1", "skip must be 0 or more, got -1"),
        ("skip=abc", "skip must be an integer, got 'abc'"),
        ("skip=", "skip must be an integer, got ''"),
        ("skip=1000000000001", "skip must be at most 1000000000000, got 1000000000001"),
        ("limit=-5", "limit must be 0 or more, got -5"),
        ("limit=1.5", "limit must be an integer, got '1.5'"),
        ("limit=100001", "limit must be at most 100000, got 100001"),
        ("limit=99999999999999999999999", "limit must be an integer, got '99999999999999999999999'"),
    ],
)
def test_bad_paging_parameters_are_400(client, source, query, message):
    response = client.get(f"/patients?{query}")

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": message}
    assert [(r.status, r.action) for r in source.requests()] == [(400, "error")]


def test_unknown_collection_is_404(client, source):
    response = client.get("/nope", params={"skip": 2})

    assert response.status_code == 404
    assert response.json() == {"error": "unknown collection 'nope'"}
    assert source.requests() == [RequestRecord("/nope", 2, 100, 404, "error")]


def test_other_methods_are_405_json(client):
    response = client.post("/patients")

    assert response.status_code == 405
    assert response.headers["allow"] in ("GET, HEAD", "HEAD, GET")
    assert response.json() == {"error": "Method Not Allowed"}


def test_max_limit_caps_the_page_size(client, source):
    source.max_limit = 3

    capped = client.get("/patients", params={"skip": 2, "limit": 50}).json()
    smaller = client.get("/patients", params={"skip": 2, "limit": 2}).json()

    assert [item["id"] for item in capped["items"]] == ["pat-00000002", "pat-00000003", "pat-00000004"]
    assert capped["total"] == 10
    assert [item["id"] for item in smaller["items"]] == ["pat-00000002", "pat-00000003"]
    assert [r.limit for r in source.requests()] == [50, 2]


def test_total_override_reports_a_wrong_total(client, source):
    source.total_overrides["patients"] = 12_345

    response = client.get("/patients", params={"skip": 8, "limit": 5})

    assert response.headers["x-total-count"] == "12345"
    assert response.json() == {"total": 12_345, "items": [patient(8), patient(9)]}


def test_a_list_collection_can_change_between_runs(client, source):
    things = ListCollection([{"id": 1, "name": "a", "updated_at": "2026-01-01T00:00:00Z"}])
    source.collections["things"] = things

    before = client.get("/things").json()
    things.replace(
        [
            {"id": 1, "name": "a2", "updated_at": "2026-01-02T00:00:00Z"},
            {"id": 2, "name": "b", "updated_at": "2026-01-02T00:00:00Z"},
        ]
    )
    after = client.get("/things").json()

    assert before == {"total": 1, "items": [{"id": 1, "name": "a", "updated_at": "2026-01-01T00:00:00Z"}]}
    assert after == {
        "total": 2,
        "items": [
            {"id": 1, "name": "a2", "updated_at": "2026-01-02T00:00:00Z"},
            {"id": 2, "name": "b", "updated_at": "2026-01-02T00:00:00Z"},
        ],
    }


def test_integers_beyond_64_bits_are_served_exactly(client, source):
    source.collections["big"] = ListCollection([{"id": 2**70, "n": -(2**64)}, {"id": 1, "name": "Zoë"}])

    response = client.get("/big")

    assert response.content == (
        '{"total":2,"items":[{"id":1180591620717411303424,"n":-18446744073709551616},{"id":1,"name":"Zoë"}]}'
    ).encode()
    assert response.json()["items"][0]["id"] == 2**70


def test_bodies_are_utf8_not_ascii_escaped(client):
    response = client.get("/patients", params={"skip": 3, "limit": 1})

    assert '"address":[{"use":"home","line":["52 长安街"],"city":"北京"'.encode() in response.content
    assert b"\\u" not in response.content


def test_latency_delays_every_data_request(client, source):
    source.latency_seconds = 0.3

    started = time.monotonic()
    ok = client.get("/patients", params={"limit": 1})
    middle = time.monotonic()
    missing = client.get("/nope")
    ended = time.monotonic()

    assert (ok.status_code, missing.status_code) == (200, 404)
    assert middle - started >= 0.3
    assert ended - middle >= 0.3


def test_control_latency_reads_and_sets_the_delay_of_later_requests(client, source):
    before = client.get("/_control/latency").json()
    put = client.put("/_control/latency", json={"seconds": 0.3})

    started = time.monotonic()
    ok = client.get("/patients", params={"limit": 1})
    waited = time.monotonic() - started

    assert before == {"seconds": 0.0}
    assert (put.status_code, put.json()) == (200, {"seconds": 0.3})
    assert source.latency_seconds == 0.3
    assert ok.status_code == 200
    assert waited >= 0.3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"seconds": -1}', "invalid latency: seconds must be a number from 0 to 60, got -1"),
        ('{"seconds": "1"}', "invalid latency: seconds must be a number from 0 to 60, got '1'"),
        ('{"seconds": true}', "invalid latency: seconds must be a number from 0 to 60, got True"),
        ('{"delay": 1}', "invalid latency: 'seconds'"),
        ("[1", "invalid latency: Expecting ',' delimiter: line 1 column 3 (char 2)"),
        ("[" * 100_000 + "]" * 100_000, "invalid latency: maximum recursion depth exceeded while decoding a JSON array from a unicode string"),
    ],
)
def test_control_latency_refuses_what_is_not_a_delay(client, source, body, message):
    response = client.put("/_control/latency", content=body)

    assert (response.status_code, response.json()) == (400, {"error": message})
    assert source.latency_seconds == 0.0


def test_request_log_records_what_was_served(client, source):
    source.add_fault(Fault("/encounters", skip=3, status=503))
    client.get("/patients", params={"skip": 0, "limit": 2})
    client.get("/encounters", params={"skip": 3, "limit": 3})
    client.get("/encounters", params={"skip": 3, "limit": 3})
    client.get("/patients", params={"skip": "x", "limit": "2"})
    client.get("/_control/health")

    assert source.requests() == [
        RequestRecord("/patients", 0, 2, 200, "data"),
        RequestRecord("/encounters", 3, 3, 503, "status"),
        RequestRecord("/encounters", 3, 3, 200, "data"),
        RequestRecord("/patients", -1, 2, 400, "error"),
    ]
    assert source.requests("/encounters") == [
        RequestRecord("/encounters", 3, 3, 503, "status"),
        RequestRecord("/encounters", 3, 3, 200, "data"),
    ]


def test_control_faults_round_trip(client, source):
    one = {"path": "/patients", "skip": 4, "status": 429, "retry_after": "1"}
    two = [
        {"path": "/encounters", "action": "malformed", "times": None},
        {"path": "/observations", "action": "drop", "times": 3},
    ]

    assert client.get("/_control/health").json() == {"ok": True}
    added_one = client.post("/_control/faults", json=one)
    added_two = client.post("/_control/faults", json=two)
    assert (added_one.status_code, added_one.json()) == (201, {"added": 1})
    assert (added_two.status_code, added_two.json()) == (201, {"added": 2})

    assert client.get("/patients", params={"skip": 4}).status_code == 429
    listed = client.get("/_control/faults").json()

    assert listed == [
        {
            "path": "/encounters",
            "skip": None,
            "times": None,
            "action": "malformed",
            "status": 503,
            "retry_after": None,
            "drip_interval": 4.0,
            "body": '{"total": 3, "items": [1, 2',
            "content_type": "application/json",
        },
        {
            "path": "/observations",
            "skip": None,
            "times": 3,
            "action": "drop",
            "status": 503,
            "retry_after": None,
            "drip_interval": 4.0,
            "body": '{"total": 3, "items": [1, 2',
            "content_type": "application/json",
        },
    ]
    assert [Fault.from_dict(item) for item in listed] == source.faults()
    assert client.delete("/_control/faults").json() == {"removed": 2}
    assert client.get("/_control/faults").json() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid fault: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (
            b'{"path": "/p", "action": "boom"}',
            "invalid fault: fault action must be one of status, hang, drip, malformed, drop, got 'boom'",
        ),
        (b'[{"path": "/p"}, {"path": "/q", "oops": 1}]', "invalid fault: unknown fault field(s): oops"),
        (b"7", "invalid fault: a fault must be a JSON object, got int"),
    ],
)
def test_control_refuses_invalid_faults_whole(client, source, body, message):
    response = client.post("/_control/faults", content=body)

    assert response.status_code == 400
    assert response.json() == {"error": message}
    assert source.faults() == []


def test_control_requests_lists_filters_and_clears(client, source):
    client.get("/patients", params={"skip": 1, "limit": 2})
    client.get("/nope")

    everything = client.get("/_control/requests").json()
    patients_only = client.get("/_control/requests", params={"path": "/patients"}).json()
    cleared = client.delete("/_control/requests").json()

    assert everything == [
        {"path": "/patients", "skip": 1, "limit": 2, "status": 200, "action": "data"},
        {"path": "/nope", "skip": 0, "limit": 100, "status": 404, "action": "error"},
    ]
    assert patients_only == [{"path": "/patients", "skip": 1, "limit": 2, "status": 200, "action": "data"}]
    assert cleared == {"removed": 2}
    assert client.get("/_control/requests").json() == []
    assert source.requests() == []


@pytest.mark.parametrize(
    ("id_gt", "expected"),
    [
        (None, ["pat-00000000", "pat-00000001", "pat-00000002"]),
        ("pat-00000004", ["pat-00000005", "pat-00000006", "pat-00000007"]),
        ("pat-00000004x", ["pat-00000005", "pat-00000006", "pat-00000007"]),
        ("pat-00000008", ["pat-00000009"]),
        ("pat-00000009", []),
        ("a", ["pat-00000000", "pat-00000001", "pat-00000002"]),
        ("zzz", []),
    ],
)
def test_keyset_serves_the_records_after_the_id_asked_for(client, source, id_gt, expected):
    params = {"limit": 3} if id_gt is None else {"limit": 3, "id_gt": id_gt}
    response = client.get("/keyset/patients", params=params)
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == expected
