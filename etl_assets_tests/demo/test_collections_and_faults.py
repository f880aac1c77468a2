"""Collections slice as documented; faults validate, round-trip through dicts and get used up."""

import pytest

from etl_assets.demo import (
    Collection,
    DemoSource,
    Fault,
    IndexedCollection,
    ListCollection,
    RequestRecord,
    default_source,
    patient,
)


def test_indexed_collection_pages_generated_records():
    collection = IndexedCollection(5, lambda i: {"n": i})

    assert isinstance(collection, Collection)
    assert len(collection) == 5
    assert collection.page(0, 2) == [{"n": 0}, {"n": 1}]
    assert collection.page(3, 10) == [{"n": 3}, {"n": 4}]
    assert collection.page(5, 10) == []
    assert collection.page(2, 0) == []
    assert IndexedCollection(3, patient).page(1, 1) == [patient(1)]
    with pytest.raises(ValueError, match="count must be 0 or more, got -1"):
        IndexedCollection(-1, patient)


def test_list_collection_pages_and_replaces():
    first = [
        {"id": 1, "name": "a", "updated_at": "2026-01-01T00:00:00Z"},
        {"id": 2, "name": "b", "updated_at": "2026-01-01T00:00:00Z"},
    ]
    collection = ListCollection(first)
    first.append({"id": 99})

    assert isinstance(collection, Collection)
    assert len(collection) == 2
    assert collection.page(1, 5) == [{"id": 2, "name": "b", "updated_at": "2026-01-01T00:00:00Z"}]

    collection.replace([{"id": 3, "name": "c", "updated_at": "2026-02-01T00:00:00Z"}])

    assert len(collection) == 1
    assert collection.page(0, 5) == [{"id": 3, "name": "c", "updated_at": "2026-02-01T00:00:00Z"}]


def test_fault_round_trips_through_a_dict():
    fault = Fault("/patients", skip=200, times=None, action="status", status=429, retry_after="3")

    assert fault.to_dict() == {
        "path": "/patients",
        "skip": 200,
        "times": None,
        "action": "status",
        "status": 429,
        "retry_after": "3",
        "drip_interval": 4.0,
        "body": '{"total": 3, "items": [1, 2',
        "content_type": "application/json",
    }
    assert Fault.from_dict(fault.to_dict()) == fault
    assert Fault.from_dict({"path": "/x", "action": "hang"}) == Fault(path="/x", action="hang")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"path": "/p", "skp": 1}, "unknown fault field(s): skp"),
        ({"skip": 1}, "a fault needs a 'path'"),
        ({"path": "p"}, "fault path must be a string starting with '/', got 'p'"),
        (
            {"path": "/p", "action": "explode"},
            "fault action must be one of status, hang, drip, malformed, drop, got 'explode'",
        ),
        ({"path": "/p", "times": 0}, "fault times must be null or an integer 1 or more, got 0"),
        ({"path": "/p", "skip": -1}, "fault skip must be null or an integer 0 or more, got -1"),
        ({"path": "/p", "skip": True}, "fault skip must be null or an integer 0 or more, got True"),
        ({"path": "/p", "status": 99}, "fault status must be an integer from 200 to 599, got 99"),
        ({"path": "/p", "drip_interval": 0}, "fault drip_interval must be a positive number of seconds, got 0"),
        (
            {"path": "/p", "retry_after": "1\r\nX: y"},
            "fault retry_after must be null or printable ASCII text, got '1\\r\\nX: y'",
        ),
        (["/p"], "a fault must be a JSON object, got list"),
    ],
)
def test_invalid_faults_are_refused(data, message):
    with pytest.raises(ValueError) as caught:
        Fault.from_dict(data)

    assert str(caught.value) == message


def test_faults_match_in_order_and_are_used_up():
    source = DemoSource()
    source.add_fault(Fault("/a", skip=5, times=2, status=500))
    source.add_fault(Fault("/a", times=None, status=502))
    source.add_fault(Fault("/b", status=504))

    taken = [source.take_fault("/a", skip) for skip in (0, 5, 5, 5)]

    assert [fault.status for fault in taken] == [502, 500, 500, 502]
    assert source.take_fault("/c", 0) is None
    assert source.take_fault("/a", None).status == 502
    assert [(f.path, f.times, f.status) for f in source.faults()] == [("/a", None, 502), ("/b", 1, 504)]
    assert source.take_fault("/b", 7).status == 504
    assert source.take_fault("/b", 7) is None
    assert source.clear_faults() == 1
    assert source.faults() == []


def test_request_log_filters_and_clears():
    source = DemoSource()
    source.log_request(RequestRecord("/a", 0, 10, 200, "data"))
    source.log_request(RequestRecord("/b", 0, 10, 404, "error"))
    source.log_request(RequestRecord("/a", 10, 10, 503, "status"))

    assert source.requests("/a") == [
        RequestRecord("/a", 0, 10, 200, "data"),
        RequestRecord("/a", 10, 10, 503, "status"),
    ]
    assert [r.path for r in source.requests()] == ["/a", "/b", "/a"]
    assert RequestRecord.from_dict(source.requests()[1].to_dict()) == RequestRecord("/b", 0, 10, 404, "error")
    assert source.clear_requests() == 3
    assert source.requests() == []


def test_default_source_sizes_the_three_collections():
    source = default_source(4, latency_seconds=0.25, max_limit=7)

    assert {name: len(collection) for name, collection in source.collections.items()} == {
        "patients": 4,
        "encounters": 12,
        "observations": 20,
    }
    assert (source.latency_seconds, source.max_limit, source.total_overrides) == (0.25, 7, {})


def test_source_refuses_bad_settings():
    with pytest.raises(ValueError, match="collection name must be one non-empty path segment, got 'a/b'"):
        DemoSource({"a/b": ListCollection([])})
    with pytest.raises(ValueError, match="max_limit must be 1 or more, got 0"):
        DemoSource(max_limit=0)
    with pytest.raises(TypeError, match="expected a Fault, got dict"):
        DemoSource().add_fault({"path": "/a"})
