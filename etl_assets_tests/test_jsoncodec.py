"""Exact JSON: big integers survive, NaN is refused, output is canonical."""

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
