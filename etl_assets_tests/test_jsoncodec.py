"""Exact JSON: big integers survive, NaN is refused, output is canonical."""

import gc

import pytest

from etl_assets import jsoncodec


def test_integers_beyond_64_bits_are_exact():
    body = b'{"id": 123456789012345678901234567890, "small": 18446744073709551615, "neg": -9223372036854775809}'
    value = jsoncodec.loads(body)
    assert value == {"id": 123456789012345678901234567890, "small": 18446744073709551615, "neg": -9223372036854775809}
    assert isinstance(value["id"], int)
    assert jsoncodec.dumps(value) == (
        '{"id":123456789012345678901234567890,"neg":-9223372036854775809,"small":18446744073709551615}'
    )


@pytest.mark.parametrize("body", [b"[NaN]", b'{"a": Infinity}', b"[-Infinity]", b"", b'{"a":', b"<html></html>"])
def test_not_json_raises_value_error(body):
    with pytest.raises(ValueError):
        jsoncodec.loads(body)


def test_unicode_kept_as_is():
    assert jsoncodec.dumps({"b": "Zoë", "a": "李"}) == '{"a":"李","b":"Zoë"}'


@pytest.mark.parametrize("body", [b'{"x": 1e400}', b"[-1e999]", b"[1" + b"0" * 400 + b".5]", b'{"x": 2E+309}'])
def test_numbers_that_overflow_to_infinity_are_refused(body):
    with pytest.raises(ValueError, match="too large for a float"):
        jsoncodec.loads(body)


def test_big_exponents_within_range_and_underflow_parse():
    assert jsoncodec.loads(b'{"a": 1.5e300, "b": 1e-400, "c": "1e999"}') == {"a": 1.5e300, "b": 0.0, "c": "1e999"}


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("extra", [{}, {"big": 2**70}], ids=["plain", "beside-a-big-integer"])
def test_nesting_stops_at_max_depth_whatever_the_stack_allows(extra):
    """orjson encodes 254 levels, the standard library as many as the stack allows: the limit
    is one number either way, and a value past the stack gets the same error as one just past it."""
    deepest = {"n": nested(jsoncodec.MAX_DEPTH - 1), **extra}
    assert jsoncodec.depth(deepest) == jsoncodec.MAX_DEPTH == 512
    assert jsoncodec.loads(jsoncodec.dumps_bytes(deepest)) == deepest
    for depth in (513, 1000, 3000):
        with pytest.raises(jsoncodec.NestingError) as raised:
            jsoncodec.dumps_bytes({"n": nested(depth - 1), **extra})
        assert (str(raised.value), raised.value.depth) == (f"nested {depth} levels deep, more than the 512 allowed", depth)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        (b" \r\n", "empty body"),
        (b'{"a": "Zo\xeb"}', "not UTF-8, as JSON must be: byte 0xeb at position 9 is invalid continuation byte"),
        (b'{"a": [1, 2', "cut off: the text ends before the JSON does: Expecting ',' delimiter: line 1 column 12 (char 11)"),
        (b'{"a": "b', "cut off: the text ends before the JSON does: Unterminated string starting at: line 1 column 7 (char 6)"),
        (b"<html></html>", "an HTML or XML page, not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"[1, 2,]", "Expecting value: line 1 column 7 (char 6)"),
        (b"[" * 5000 + b"]" * 5000, "nested too deep to parse: more than about 1,000 levels, and records may nest at most 512"),
        (b"[" + b"1" * 4301 + b"]", "an integer longer than 4300 digits, which cannot be read exactly"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
    ],
    ids=["empty", "whitespace", "latin-1", "cut-in-array", "cut-in-string", "html", "trailing-comma", "too-deep",
         "4301-digits", "nan"],
)
def test_not_json_says_why(body, reason):
    with pytest.raises(jsoncodec.NotJsonError) as raised:
        jsoncodec.loads(body)
    assert str(raised.value) == reason


def test_the_last_of_two_equal_names_wins_on_both_parser_paths():
    assert jsoncodec.loads(b'{"a": 1, "b": 2, "a": 3}') == {"a": 3, "b": 2}
    assert jsoncodec.loads(b'{"a": 1, "b": 1180591620717411303425, "a": 3}') == {"a": 3, "b": 2**70 + 1}


@pytest.mark.parametrize("body", [b'{"a": [1, {"b": 2}]}', b"[1, 2,]", b'{"big": 123456789012345678901}'])
@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_it_was_found(body, enabled):
    """Parsing pauses the collector while orjson builds the value; whatever happens, it is
    running again afterwards if it was running before, and still paused if it was paused."""
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        try:
            jsoncodec.loads(body)
        except ValueError:
            pass
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_a_paused_block_resumes_the_collector_once_even_nested_or_failing():
    was = gc.isenabled()
    try:
        gc.enable()
        with pytest.raises(KeyError):
            with jsoncodec.collector_paused():
                assert not gc.isenabled()
                with jsoncodec.collector_paused():
                    jsoncodec.loads(b"[1]")
                    assert not gc.isenabled()
                assert not gc.isenabled()
                raise KeyError("x")
        assert gc.isenabled()
    finally:
        gc.enable() if was else gc.disable()


@pytest.mark.parametrize(
    ("body", "exact"),
    [
        (b"[1234567890123456789]", True),
        (b"[-12345678901234567890]", True),
        (b"[1e308]", True),
        (b"[1.5e30, -2E+99]", False),
        (b"[1e+400]", True),
        (b"[1E-400]", True),
        (b'["+1-555-3766", "2024-01-01T00:00:02Z", 123456789012345678]', False),
    ],
)
def test_numbers_orjson_could_round_or_overflow_take_the_exact_path(body, exact):
    assert jsoncodec._needs_exact_path(body) is exact
