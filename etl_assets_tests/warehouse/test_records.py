"""Preparing a page: keys, canonical text, hashes, duplicates, NUL removal, bad records."""

import pytest

from etl_assets.errors import MalformedPageError
from etl_assets.warehouse.records import prepare_page, record_key


def test_keys_are_text_and_composite_keys_are_json_arrays():
    assert record_key({"id": 7}, ("id",)) == "7"
    assert record_key({"id": "pat-1"}, ("id",)) == "pat-1"
    assert record_key({"id": 2.0}, ("id",)) == "2"
    assert record_key({"a": 1, "b": "x"}, ("a", "b")) == '["1","x"]'
    assert record_key({"id": 123456789012345678901234567890}, ("id",)) == "123456789012345678901234567890"
    for bad in ({"id": None}, {}, {"id": {"x": 1}}, {"id": [1]}, {"id": True}):
        assert record_key(bad, ("id",)) is None


def test_hash_is_of_canonical_text_so_key_order_does_not_matter():
    one = prepare_page([{"id": 1, "a": 1, "b": 2}], extract="x", primary_key=("id",), skip=0)
    two = prepare_page([{"b": 2, "id": 1, "a": 1}], extract="x", primary_key=("id",), skip=0)
    assert one.rows == two.rows
    assert one.rows["1"][0] == b'{"a":1,"b":2,"id":1}'


def test_last_duplicate_wins_and_is_counted():
    page = prepare_page(
        [{"id": 1, "v": "a"}, {"id": 1, "v": "b"}, {"id": 2}, {"id": 1, "v": "c"}],
        extract="x",
        primary_key=("id",),
        skip=0,
    )
    assert (page.received, page.duplicates, list(page.rows)) == (4, 2, ["2", "1"])
    assert page.rows["1"][0] == b'{"id":1,"v":"c"}'


def test_nul_removed_from_values_and_keys_with_a_warning():
    page = prepare_page(
        [{"id": 2, "name": "ab\x00c", "tags": ["x\x00"], "k\x00": 1}], extract="x", primary_key=("id",), skip=0
    )
    assert page.rows["2"][0] == b'{"id":2,"k":1,"name":"abc","tags":["x"]}'
    assert page.warnings == ["extract 'x': record '2': removed NUL characters from k, name, tags[0]"]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"id": 1}, [1, 2]], "extract 'p', skip=40, record 41 (position 1 in the page): records must be JSON objects, got list"),
        ([{"id": 1}, {"name": "x"}], "extract 'p', skip=40, record 41 (position 1 in the page): primary key id is missing"),
        ([{"id": None}], "record 40 (position 0 in the page): primary key id is null ({\"id\":null})"),
        ([{"id": {"a": 1}}], "record 40 (position 0 in the page): primary key id is an object, not a string or number"),
        ([{"id": "x" * 2049}], "record 40 (position 0 in the page): the primary key is 2049 bytes long, more than the 2048 allowed"),
    ],
)
def test_bad_records_name_extract_position_and_reason(records, message):
    with pytest.raises(MalformedPageError) as raised:
        prepare_page(records, extract="p", primary_key=("id",), skip=40)
    assert message in str(raised.value)
    assert raised.value.extract == "p"
