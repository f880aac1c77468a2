"""Fast, exact JSON: orjson where it is exact, the standard library where it is not.

orjson is several times faster than ``json`` but turns integers beyond 64 bits into
floats when parsing and refuses them when encoding. A record id like
123456789012345678901234567890 must survive byte for byte, so bodies with a run of 19 or
more digits go through the standard library, and so does any value orjson cannot encode.
NaN and Infinity are not JSON and PostgreSQL's jsonb refuses them: both paths reject them.
"""

import json
import re
from typing import Any

import orjson

_LONG_DIGITS = re.compile(rb"\d{19}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(body: bytes) -> Any:
    """Parse JSON; raise ``ValueError`` with the reason when it is not valid JSON."""
    if not _LONG_DIGITS.search(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    text = body.decode("utf-8")
    return json.loads(text, parse_constant=_reject_constant)


def dumps(value: Any) -> str:
    """Encode canonically (sorted keys, no spaces) so equal records give equal text."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
