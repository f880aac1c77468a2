"""Fast, exact JSON: orjson where it is exact, the standard library where it is not.

orjson is several times faster than ``json`` but turns integers beyond 64 bits into
floats when parsing and refuses them when encoding. A record id like
123456789012345678901234567890 must survive byte for byte, so bodies with a run of 19 or
more digits go through the standard library, and so does any value orjson cannot encode.
NaN and Infinity are not JSON and PostgreSQL's jsonb refuses them: both paths reject them.
"""

import json
from typing import Any

import orjson

# One C-speed pass classifies every byte (digit -> "0", e/E -> "e", sign -> "+", else " ");
# plain substring searches on the result then find 19-digit runs and 3-digit exponents.
# A regular expression doing the same costs about eight times more on a 750 kB page.
_CLASSES = bytearray(b" " * 256)
for _byte in b"0123456789":
    _CLASSES[_byte] = ord("0")
for _byte in b"eE":
    _CLASSES[_byte] = ord("e")
for _byte in b"+-":
    _CLASSES[_byte] = ord("+")
_CLASSES = bytes(_CLASSES)
_SUSPECT = (b"0" * 19, b"0e000", b"0e+000")


def _needs_exact_path(body: bytes) -> bool:
    """Whether ``body`` may hold an integer orjson would round or a number that overflows."""
    classes = body.translate(_CLASSES)
    return any(suspect in classes for suspect in _SUSPECT)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is too large for a float (it would become Infinity)")
    return value


def loads(body: bytes) -> Any:
    """Parse JSON; raise ``ValueError`` with the reason when it is not valid JSON.

    A number like ``1e400`` overflows to Infinity in both parsers, which orjson would later
    write back as ``null``: bodies with three-digit exponents take the checked path.
    """
    if not _needs_exact_path(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    text = body.decode("utf-8")
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def dumps(value: Any) -> str:
    """Encode canonically (sorted keys, no spaces) so equal records give equal text."""
    return dumps_bytes(value).decode("utf-8")


def dumps_bytes(value: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes, for callers that hash and write bytes: no decoding and
    re-encoding of every record on the way to the database."""
    try:
        # orjson's bytes keep the capacity of its write buffer (about 8 kB for a 750-byte
        # record); a page of them held 8 MB instead of 0.8 MB. An exact copy is cheaper than
        # the allocator churn those buffers cause.
        return memoryview(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).tobytes()
    except TypeError:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
