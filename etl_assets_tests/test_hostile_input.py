"""Hostile and odd input (issue 4, item 2): each case is a real extract against a real HTTP
server on loopback, on SQLite and on PostgreSQL, with the exact error it gets or the exact
value it stores. See "Odd input" in the README for the treatments chosen.

A bad page is always the third one (skip=20, pages of 10): the error must name the extract,
the skip and the record or the reason, the run must end ``failed`` with its checkpoint at the
last good page, and the 20 records of the two pages before must stay stored, unchanged.
"""

import hashlib
import http.server
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from etl_assets import jsoncodec
from etl_assets.checkpoints import RunStatus
from etl_assets.demo import DemoSource, Fault, ListCollection, ServerThread
from etl_assets.errors import MalformedPageError, SourceUnavailableError, WarehouseError
from etl_assets.warehouse.records import MAX_KEY_BYTES, MAX_RECORD_BYTES
from etl_assets_tests.support import Warehouse, extract, items_spec, simple_records

RECORDS = simple_records(50)
BIG = 2**70 + 1  # 1180591620717411303425: beyond 64 bits, and odd, so a float would round it


def by_key(records: list[dict]) -> dict[str, dict]:
    return {str(r["id"]): r for r in records}


@pytest.fixture
def source() -> Iterator[ServerThread]:
    demo = DemoSource(collections={"items": ListCollection(RECORDS)})
    with ServerThread(demo) as server:
        yield server


def serve(source: ServerThread, records: list[dict]) -> None:
    source.source.collections["items"].replace(records)


def with_record(index: int, record: dict) -> list[dict]:
    """The 50 records with the one at ``index`` replaced (index 21 is position 1 of page 3)."""
    records = list(RECORDS)
    records[index] = record
    return records


def page_body(items: str, total: str = "50") -> str:
    """A body of the demo source's shape, written by hand so it can hold what JSON encoders refuse."""
    return '{"total": ' + total + ', "items": ' + items + "}"


def nested(depth: int) -> list:
    """Lists nested ``depth`` deep (``[]`` is 1), built without recursion."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def assert_fails_at_skip_20(
    url: str, warehouse: Warehouse, message: str, error: type[Exception] = MalformedPageError
) -> None:
    """An extract fails with exactly ``message``, checkpointed at the last good page, and the
    20 records of pages 1-2 stay stored as they were."""
    with pytest.raises(error) as raised:
        extract(items_spec(url, limit=10), warehouse, interval=60)
    assert str(raised.value) == message
    assert raised.value.extract == "items"
    [run] = warehouse.runs("items")
    assert (run.status, run.error_message, run.records_loaded) == (RunStatus.FAILED, message, 20)
    assert (run.checkpoint.skip, run.checkpoint.page_index, run.checkpoint.total_records) == (20, 2, 20)
    assert warehouse.records("items") == by_key(RECORDS[:20])


def not_json(url: str, body: bytes, reason: str, content_type: str = "application/json") -> str:
    """The message of a page at skip=20 whose body is not usable JSON."""
    start = body[:80].decode("utf-8", "replace")
    return (
        f"extract 'items', skip=20, {url}/items?skip=20&limit=10: the body is not valid JSON ({reason}); "
        f"content type {content_type!r}, {len(body)} bytes, starting {start!r}"
    )


def raw_record(warehouse: Warehouse, key: str) -> str:
    """The stored record as the database's own text, not parsed back by a driver."""
    column = "CAST(record AS text)" if warehouse.dialect == "postgresql" else "record"
    with warehouse.engine.connect() as conn:
        return conn.execute(
            sa.text(f"SELECT {column} FROM {warehouse.table('stg_items')} WHERE record_key = :key"), {"key": key}
        ).scalar_one()


# -- bodies that are not usable JSON -------------------------------------------------------

CUT_IN_STRING = page_body('[{"id": 21, "name": "name-')
CUT_AFTER_KEY = page_body('[{"id": 21}, {"id"')[:-1]
CUT_IN_NUMBER = page_body('[{"id": 21}, {"id": 22')[:-1]
NOT_JSON = [
    ("nan", page_body('[{"id": 21, "score": NaN}]'), "NaN is not valid JSON"),
    ("infinity", page_body('[{"id": 21, "score": Infinity}]'), "Infinity is not valid JSON"),
    ("minus-infinity", page_body('[{"id": 21, "score": -Infinity}]'), "-Infinity is not valid JSON"),
    ("nan-beside-a-big-integer", page_body(f'[{{"id": {BIG}, "score": NaN}}]'), "NaN is not valid JSON"),
    ("nan-as-the-total", page_body('[{"id": 21}]', total="NaN"), "NaN is not valid JSON"),
    ("integer-of-4301-digits", page_body('[{"id": 21, "big": ' + "9" * 4301 + "}]"),
     "an integer longer than 4300 digits, which cannot be read exactly"),
    ("number-overflowing-to-infinity", page_body('[{"id": 21, "score": 1e400}]'),
     "number 1e400 is too large for a float (it would become Infinity)"),
    ("raw-nul-byte-in-a-string", page_body('[{"id": 21, "name": "a\x00b"}]'),
     "Invalid control character at: line 1 column 46 (char 45)"),
    ("html-error-page", "<html><body><h1>502 Bad Gateway</h1></body></html>",
     "an HTML or XML page, not JSON: Expecting value: line 1 column 1 (char 0)"),
    ("empty", "", "empty body"),
    ("only-whitespace", " \r\n\t", "empty body"),
    ("cut-in-a-string", CUT_IN_STRING,
     "cut off: the text ends before the JSON does: Unterminated string starting at: line 1 column 44 (char 43)"),
    ("cut-after-a-key", CUT_AFTER_KEY,
     f"cut off: the text ends before the JSON does: Expecting ':' delimiter: line 1 column {len(CUT_AFTER_KEY) + 1} "
     f"(char {len(CUT_AFTER_KEY)})"),
    ("cut-in-a-number", CUT_IN_NUMBER,
     f"cut off: the text ends before the JSON does: Expecting ',' delimiter: line 1 column {len(CUT_IN_NUMBER) + 1} "
     f"(char {len(CUT_IN_NUMBER)})"),
    ("nested-5000-deep", page_body('[{"id": 21, "n": ' + "[" * 5000 + "]" * 5000 + "}]"),
     "nested too deep to parse: more than about 1,000 levels, and records may nest at most 512"),
    ("trailing-garbage", page_body('[{"id": 21}]') + "}", "Extra data: line 1 column 37 (char 36)"),
]


@pytest.mark.parametrize(("body", "reason"), [case[1:] for case in NOT_JSON], ids=[case[0] for case in NOT_JSON])
def test_a_body_that_is_not_usable_json_fails_the_page_and_keeps_the_pages_before(source, warehouse, body, reason):
    content_type = "text/html" if body.startswith("<html>") else "application/json"
    source.source.add_fault(Fault(path="/items", skip=20, action="malformed", body=body, content_type=content_type))
    assert_fails_at_skip_20(source.url, warehouse, not_json(source.url, body.encode(), reason, content_type))


# -- what the demo source cannot send: bytes that are not UTF-8, a response cut in transit ---


class RawSource:
    """The standard library's HTTP server on loopback, serving ``RECORDS`` in pages of the
    demo source's shape, except where ``answer(skip, attempt)`` returns raw bytes to send
    instead: ``(body, content_type, declared_length)``. A declared length above the body's
    is a response cut off in transit (the server closes the connection after the body)."""

    def __init__(self, answer: Callable[[int, int], tuple[bytes, str, int] | None]) -> None:
        self.answer = answer
        self.attempts: dict[int, int] = {}
        source = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                query = parse_qs(urlsplit(self.path).query)
                skip, limit = int(query["skip"][0]), int(query["limit"][0])
                attempt = source.attempts[skip] = source.attempts.get(skip, 0) + 1
                raw = source.answer(skip, attempt)
                if raw is None:
                    page = RECORDS[skip : skip + limit]
                    body = json.dumps({"total": len(RECORDS), "items": page}).encode()
                    raw = (body, "application/json", len(body))
                body, content_type, declared = raw
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(declared))
                self.end_headers()
                self.wfile.write(body)
                if declared != len(body):
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "RawSource":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


LATIN1_PAGE = page_body('[{"id": 21, "name": "Zo\u00eb"}]').encode("latin-1")
LATIN1_BESIDE_BIG = page_body(f'[{{"id": 21, "big": {BIG}, "name": "Zo\u00eb"}}]').encode("latin-1")


INVALID_START = b'{"total": 50, "items": [{"id": 21, "name": "\xff\xfe"}]}'


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (LATIN1_PAGE, "application/json",
         f"byte 0xeb at position {LATIN1_PAGE.index(0xEB)} is invalid continuation byte"),
        (LATIN1_PAGE, "application/json; charset=iso-8859-1",  # a declared charset is not honoured
         f"byte 0xeb at position {LATIN1_PAGE.index(0xEB)} is invalid continuation byte"),
        (LATIN1_BESIDE_BIG, "application/json",  # the exact-integer parser path
         f"byte 0xeb at position {LATIN1_BESIDE_BIG.index(0xEB)} is invalid continuation byte"),
        (INVALID_START, "application/json", f"byte 0xff at position {INVALID_START.index(0xFF)} is invalid start byte"),
    ],
    ids=["latin-1", "latin-1-declared", "latin-1-beside-a-big-integer", "invalid-start-byte"],
)
def test_a_body_that_is_not_utf8_fails_naming_the_byte(warehouse, body, content_type, reason):
    with RawSource(lambda skip, _: (body, content_type, len(body)) if skip == 20 else None) as raw:
        message = not_json(raw.url, body, f"not UTF-8, as JSON must be: {reason}", content_type)
        assert_fails_at_skip_20(raw.url, warehouse, message)


def cut_in_transit(times: int | None) -> Callable[[int, int], tuple[bytes, str, int] | None]:
    """The page at skip=20 sends 30 bytes of its body, then the connection closes."""

    def answer(skip: int, attempt: int) -> tuple[bytes, str, int] | None:
        if skip != 20 or (times is not None and attempt > times):
            return None
        body = json.dumps({"total": 50, "items": RECORDS[20:30]}).encode()
        return body[:30], "application/json", len(body)

    return answer


def test_a_body_cut_off_in_transit_is_fetched_again(warehouse):
    with RawSource(cut_in_transit(times=1)) as raw:
        result = extract(items_spec(raw.url, limit=10), warehouse, interval=60)
    assert raw.attempts == {0: 1, 10: 1, 20: 2, 30: 1, 40: 1}
    assert (result.records_fetched, result.inserted, result.requests) == (50, 50, 6)
    assert warehouse.records("items") == by_key(RECORDS)
    assert warehouse.run(result.run_id).status is RunStatus.SUCCESS


def test_a_body_always_cut_off_in_transit_fails_after_the_retries(warehouse):
    full = len(json.dumps({"total": 50, "items": RECORDS[20:30]}).encode())
    with RawSource(cut_in_transit(times=None)) as raw:
        assert_fails_at_skip_20(
            raw.url,
            warehouse,
            f"extract 'items': {raw.url}/items?skip=20&limit=10 failed 3 times, last: RemoteProtocolError: "
            f"peer closed connection without sending complete message body (received 30 bytes, expected {full})",
            error=SourceUnavailableError,
        )
    assert raw.attempts[20] == 3


# -- records the warehouse cannot key or hold ------------------------------------------------

LONG_KEY = hashlib.shake_256(b"long key").hexdigest((MAX_KEY_BYTES + 1) // 2 + 1)[: MAX_KEY_BYTES + 1]
BAD_RECORDS = [
    ("no-primary-key", {"name": "x"}, 'primary key id is missing ({"id":"<missing>"})'),
    ("null-primary-key", {"id": None, "name": "x"}, 'primary key id is null ({"id":null})'),
    ("object-primary-key", {"id": {"value": 22}},
     'primary key id is an object, not a string or number ({"id":{"value":22}})'),
    ("array-primary-key", {"id": [22]}, 'primary key id is an array, not a string or number ({"id":[22]})'),
    ("boolean-primary-key", {"id": True},
     'primary key id is a boolean (true), not a string or number ({"id":true})'),
    ("primary-key-too-long", {"id": LONG_KEY},
     f"the primary key is {MAX_KEY_BYTES + 1} bytes long, more than the {MAX_KEY_BYTES} allowed "
     f"(starting {LONG_KEY[:40]!r})"),
    ("not-an-object", "a string", "records must be JSON objects, got str"),
]


@pytest.mark.parametrize(("record", "reason"), [c[1:] for c in BAD_RECORDS], ids=[c[0] for c in BAD_RECORDS])
def test_a_record_without_a_usable_key_fails_naming_its_position(source, warehouse, record, reason):
    serve(source, with_record(21, record))
    message = f"extract 'items', skip=20, record 21 (position 1 in the page): {reason}"
    assert_fails_at_skip_20(source.url, warehouse, message)


def test_a_composite_key_names_the_field_that_is_unusable(source, warehouse):
    serve(source, with_record(21, {"id": 22, "name": None}))
    spec = replace(items_spec(source.url, limit=10), primary_key=("id", "name"))
    with pytest.raises(MalformedPageError) as raised:
        extract(spec, warehouse, interval=60)
    assert str(raised.value) == (
        "extract 'items', skip=20, record 21 (position 1 in the page): primary key name is null "
        '({"id":22,"name":null})'
    )
    assert set(warehouse.records("items")) == {f'["{i}","name-{i}"]' for i in range(1, 21)}


@pytest.mark.parametrize(
    ("record", "depth"),
    [
        ({"id": 22, "n": nested(512)}, 513),
        ({"id": 22, "big": BIG, "n": nested(512)}, 513),  # beside a big integer: the other parser path
        ({"id": 22, "n": {"deeper": nested(700)}}, 702),
    ],
    ids=["513", "513-beside-a-big-integer", "702-in-an-object"],
)
def test_a_record_nested_deeper_than_the_limit_fails_naming_it(source, warehouse, record, depth):
    serve(source, with_record(21, record))
    assert_fails_at_skip_20(
        source.url,
        warehouse,
        f"extract 'items', skip=20, record 21 (position 1 in the page), key '22': the record is nested "
        f"{depth} levels deep, more than the {jsoncodec.MAX_DEPTH} allowed",
    )


def test_a_record_too_deep_for_the_python_stack_gets_the_same_error(source, warehouse):
    """1,000 levels: orjson parses the body (it allows 1,024) but the encoder's stack runs out;
    the limit, not the stack, still decides what the error says."""
    body = page_body('[{"id": 21}, {"id": 22, "n": ' + "[" * 999 + "]" * 999 + "}]")
    source.source.add_fault(Fault(path="/items", skip=20, action="malformed", body=body))
    assert_fails_at_skip_20(
        source.url,
        warehouse,
        "extract 'items', skip=20, record 21 (position 1 in the page), key '22': the record is nested "
        "1000 levels deep, more than the 512 allowed",
    )


def sized_record(size: int) -> dict:
    """Record 22 grown to exactly ``size`` bytes of canonical JSON."""
    record = {**RECORDS[21], "blob": ""}
    record["blob"] = "x" * (size - len(jsoncodec.dumps_bytes(record)))
    assert len(jsoncodec.dumps_bytes(record)) == size
    return record


def test_a_record_larger_than_the_limit_fails_naming_it(source, warehouse):
    serve(source, with_record(21, sized_record(MAX_RECORD_BYTES + 1)))
    assert_fails_at_skip_20(
        source.url,
        warehouse,
        "extract 'items', skip=20, record 21 (position 1 in the page), key '22': the record is 33554433 bytes "
        "as JSON, more than the 33554432 allowed",
    )


def test_a_page_postgresql_refuses_past_the_checks_fails_as_the_warehouse_refusing_it(
    source, postgres_warehouse, monkeypatch
):
    """Should a value the checks let through be refused by PostgreSQL itself (here a key too
    long for its index, with the key limit lifted), the driver's error from the page's COPY
    must fail the run like any refusal of the warehouse, not escape as a bare psycopg error."""
    monkeypatch.setattr("etl_assets.warehouse.records.MAX_KEY_BYTES", 10_000)
    key = hashlib.shake_256(b"too long to index").hexdigest(1500)
    serve(source, with_record(21, {"id": key}))
    assert_fails_at_skip_20(
        source.url,
        postgres_warehouse,
        "extract 'items': the warehouse refused the page at skip=20: ProgramLimitExceeded: index row size "
        '3016 exceeds btree version 4 maximum 2704 for index "stg_items_pkey"',
        error=WarehouseError,
    )


# -- odd input that is stored, identically on both backends ----------------------------------


def test_records_at_the_limits_are_stored_exactly(source, warehouse):
    """The largest record, the deepest record and the longest key allowed all store, and a
    re-run finds them unchanged."""
    key = LONG_KEY[:MAX_KEY_BYTES]  # random hex: PostgreSQL cannot compress it into its index
    largest, deepest, longest = sized_record(MAX_RECORD_BYTES), {"id": 23, "n": nested(511)}, {"id": key}
    records = with_record(22, deepest)
    records[21], records[23] = largest, longest
    serve(source, records)
    result = extract(items_spec(source.url, limit=10), warehouse)
    assert (result.records_fetched, result.inserted) == (50, 50)
    stored = warehouse.records("items")
    assert stored == by_key(records)
    assert jsoncodec.depth(stored["23"]) == jsoncodec.MAX_DEPTH
    again = extract(items_spec(source.url, limit=10), warehouse)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 50)


def test_integers_beyond_64_bits_are_stored_exactly(source, warehouse):
    odd = {
        "id": BIG,
        "big": BIG,
        "negative": -BIG,
        "u64_max_plus_one": 2**64,
        "i64_min_minus_one": -(2**63) - 1,
        "forty_digits": 10**40 + 7,
        "in_a_list": [2**100 + 3, {"deeper": -(2**90) - 5}],
        "string_of_digits": str(BIG),
        "longest_readable": int("9" * 4300),
    }
    serve(source, with_record(25, odd))
    result = extract(items_spec(source.url, limit=10), warehouse)
    assert result.records_fetched == 50
    stored = warehouse.records("items")
    assert stored[str(BIG)] == odd and "26" not in stored
    assert [type(stored[str(BIG)][k]) for k in ("id", "big", "negative", "forty_digits")] == [int] * 4
    text = raw_record(warehouse, "1180591620717411303425")
    for digits in ("1180591620717411303425", "-1180591620717411303425", "18446744073709551616",
                   "-9223372036854775809", "10000000000000000000000000000000000000007",
                   "1267650600228229401496703205379", "-1237940039285380274899124229", "9" * 4300):
        assert digits in text
    assert "e+" not in text and "E+" not in text


DUPLICATE_NAMES = '{"id": 21, "name": "first", "name": "second", "updated_at": "2026-01-22T00:00:00Z"}'
DUPLICATE_IDS = '{"id": 99, "name": "name-22", "updated_at": "2026-01-23T00:00:00Z", "id": 22}'


@pytest.mark.parametrize("big", [False, True], ids=["fast-parser", "exact-parser"])
def test_a_name_twice_in_one_object_keeps_the_last(source, warehouse, big):
    rest = [dict(r) for r in RECORDS[22:30]]
    if big:
        rest[0]["big"] = BIG  # a 22-digit number sends the page through the exact parser
    items = "[" + ", ".join([DUPLICATE_NAMES, DUPLICATE_IDS, *map(json.dumps, rest)]) + "]"
    source.source.add_fault(Fault(path="/items", skip=20, action="malformed", body=page_body(items)))
    result = extract(items_spec(source.url, limit=10), warehouse)
    assert (result.records_fetched, result.inserted, result.duplicates) == (50, 50, 0)
    expected = by_key(RECORDS[:20] + rest + RECORDS[30:])
    expected["21"] = {"id": 21, "name": "second", "updated_at": "2026-01-22T00:00:00Z"}
    expected["22"] = {"id": 22, "name": "name-22", "updated_at": "2026-01-23T00:00:00Z"}
    assert warehouse.records("items") == expected
    assert "99" not in warehouse.records("items")


def test_nul_characters_are_removed_with_a_warning_naming_record_and_field(source, warehouse, caplog):
    records = list(RECORDS)
    records[21] = {"id": 22, "name": "na\x00me", "tags": ["a", "b\x00"], "ke\x00y": {"in\x00ner": "\x00"}}
    records[22] = {"id": "id\x00-23", "name": "name-23"}
    serve(source, records)
    with caplog.at_level(logging.WARNING):
        result = extract(items_spec(source.url, limit=10), warehouse, log=logging.getLogger("nul"))
    assert result.warnings == [
        "extract 'items': record '22': removed NUL characters from key, key.inner, name, tags[1]",
        "extract 'items': record 'id-23': removed NUL characters from <primary key>, id",
    ]
    assert result.warnings[0] in caplog.text
    stored = warehouse.records("items")
    assert stored["22"] == {"id": 22, "name": "name", "tags": ["a", "b"], "key": {"inner": ""}}
    assert stored["id-23"] == {"id": "id-23", "name": "name-23"}
    assert len(stored) == 50 and "\\u0000" not in raw_record(warehouse, "22")
    again = extract(items_spec(source.url, limit=10), warehouse)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 50)


# -- totals that are not a count ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "shown", "header"),
    [
        (-5, "-5", False),
        ("fifty", "'fifty'", False),
        (12.5, "12.5", False),
        (50.0, "50.0", False),
        (True, "True", False),
        ([50], "[50]", False),
        ({"count": 50}, "{'count': 50}", False),
        (-5, "'-5'", True),
        ("fifty", "'fifty'", True),
        ("5e1", "'5e1'", True),
    ],
    ids=["negative", "text", "fraction", "float", "boolean", "array", "object",
         "header-negative", "header-text", "header-exponent"],
)
def test_a_total_that_is_not_a_count_is_ignored_with_a_warning(source, warehouse, total, shown, header):
    """The run reads on without a total, one page at a time, to the first short page."""
    source.source.total_overrides["items"] = total
    spec = items_spec(source.url, limit=10, total_path=None, total_header="X-Total-Count") if header \
        else items_spec(source.url, limit=10)
    origin = "header X-Total-Count" if header else "total_path 'total'"
    result = extract(spec, warehouse)
    assert sorted(r.skip for r in source.source.requests("/items")) == [0, 10, 20, 30, 40, 50]
    assert result.warnings == [
        f"extract 'items', skip={skip}, {source.url}/items?skip={skip}&limit=10: ignoring the source's "
        f"total from {origin}: {shown} is not a count"
        for skip in (0, 10, 20, 30, 40, 50)
    ]
    assert (result.records_fetched, result.source_total) == (50, None)
    assert warehouse.records("items") == by_key(RECORDS)
    assert warehouse.run(result.run_id).status is RunStatus.SUCCESS


def test_a_total_of_plain_digits_in_a_string_is_a_count(source, warehouse):
    source.source.total_overrides["items"] = "50"
    result = extract(items_spec(source.url, limit=10), warehouse)
    assert sorted(r.skip for r in source.source.requests("/items")) == [0, 10, 20, 30, 40]
    assert (result.warnings, result.source_total, result.records_fetched) == ([], 50, 50)


# -- nothing stored before is lost ---------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(path="/items", skip=20, action="malformed", body=page_body('[{"id": 21, "score": NaN}]')),
        Fault(path="/items", skip=20, action="malformed", body=page_body('[{"id": 21}, {"id": null}]')),
        Fault(path="/items", skip=20, action="malformed", body=CUT_IN_STRING),
    ],
    ids=["nan", "null-key", "cut-off"],
)
def test_a_bad_page_in_a_later_run_keeps_every_record_stored_before(source, warehouse, fault):
    first = extract(items_spec(source.url, limit=10), warehouse)
    changed = [{**r, "name": f"renamed-{r['id']}"} for r in RECORDS]
    serve(source, changed)
    source.source.add_fault(fault)
    with pytest.raises(MalformedPageError):
        extract(items_spec(source.url, limit=10), warehouse, interval=60)
    second = warehouse.runs("items")[-1]
    assert (second.status, second.checkpoint.skip, second.records_loaded) == (RunStatus.FAILED, 20, 20)
    assert warehouse.run(first.run_id).status is RunStatus.SUCCESS
    assert warehouse.records("items") == by_key(changed[:20] + RECORDS[20:])
