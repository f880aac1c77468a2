"""Fast, exact JSON: orjson where it is exact, the standard library where it is not.

orjson is several times faster than ``json`` but turns integers beyond 64 bits into
floats when parsing and refuses them when encoding. A record id like
123456789012345678901234567890 must survive byte for byte, so bodies with a run of 19 or
more digits go through the standard library, and so does any value orjson cannot encode.
NaN and Infinity are not JSON and PostgreSQL's jsonb refuses them: both paths reject them.

Limits that would otherwise depend on which path a value takes (orjson nests 1,024 levels
when parsing and 254 when encoding, the standard library about as deep as the Python stack
happens to allow) are made one rule here: :data:`MAX_DEPTH`.
"""

import gc
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

# One C-speed pass classifies every byte (digit -> "0", e/E -> "e", else " ") and drops the
# signs; two plain substring searches on the result then find 19-digit runs and 3-digit
# exponents, signed or not. Dropping the signs can only join runs of digits, so nothing the
# checks are for is missed (a false alarm costs the slower exact parse, never a wrong value),
# and one search fewer saves a quarter of the check. A regular expression doing the same
# costs about eight times more on a 750 kB page.
_CLASSES = bytearray(b" " * 256)
for _byte in b"0123456789":
    _CLASSES[_byte] = ord("0")
for _byte in b"eE":
    _CLASSES[_byte] = ord("e")
_CLASSES = bytes(_CLASSES)
_SIGNS = b"+-"
_SUSPECT = (b"0" * 19, b"0e000")

MAX_DEPTH = 512
"""Deepest nesting of arrays and objects :func:`dumps_bytes` encodes (a flat object is 1).

Whatever the parser path, a value this deep always encodes and a deeper one never does; it
also stays well inside SQLite's JSON functions (1,000 levels) and PostgreSQL's stack."""


class NotJsonError(ValueError):
    """A body :func:`loads` cannot turn into a value; the message is the whole reason."""


class NestingError(ValueError):
    """A value nested deeper than :data:`MAX_DEPTH`; ``depth`` is how deep it is."""

    def __init__(self, depth: int) -> None:
        super().__init__(f"nested {depth} levels deep, more than the {MAX_DEPTH} allowed")
        self.depth = depth


def _needs_exact_path(body: bytes) -> bool:
    """Whether ``body`` may hold an integer orjson would round or a number that overflows."""
    classes = body.translate(_CLASSES, _SIGNS)
    return any(suspect in classes for suspect in _SUSPECT)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a block that builds many short-lived objects,
    such as a parsed page, so that none of its collections walks them while they live.

    A page of 1,000 records is tens of thousands of new lists and dicts: with the collector
    on, every 700 of them start a collection that walks the young objects, and the ones that
    survive (the page being built) are pushed to older generations until a full collection
    walks the whole heap, about 150 ms in a Dagster process. That was a quarter of a run's
    wall time, holding the GIL that the main thread needs between two database round trips.
    Objects made while paused are counted as usual and collected by the first collection
    after it, once; what the block has freed by then is never walked at all. A collector
    already paused (by an enclosing block, or by the application) is left as it is."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _loads_without_collecting(body: bytes) -> Any:
    """``orjson.loads`` with the collector paused: orjson holds the GIL for the whole call and
    builds trees, never cycles, so no other thread runs while it is paused and nothing it
    would have freed is missed."""
    with collector_paused():
        return orjson.loads(body)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is too large for a float (it would become Infinity)")
    return value


def _cut_off(exc: json.JSONDecodeError) -> bool:
    """Whether the parser ran out of text: the JSON was cut off, not merely wrong."""
    return exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string")


def loads(body: bytes) -> Any:
    """Parse JSON; raise :class:`NotJsonError` saying why when the body is not usable JSON.

    A number like ``1e400`` overflows to Infinity in both parsers, which orjson would later
    write back as ``null``: bodies with three-digit exponents take the checked path. The
    reason tells apart what an operator fixes differently: an empty body, one cut off (by the
    server, or by a proxy that ends the response early), one that is not UTF-8 (RFC 8259
    requires it, so a declared charset is not honoured), an HTML or XML page (an error page
    sent with status 200), one nested too deep to parse, and any other invalid JSON.
    """
    if not _needs_exact_path(body):
        try:
            return _loads_without_collecting(body)
        except orjson.JSONDecodeError:
            pass
    if not body.strip():
        raise NotJsonError("empty body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotJsonError(
            f"not UTF-8, as JSON must be: byte 0x{body[exc.start]:02x} at position {exc.start} "
            f"is {exc.reason}"
        ) from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        if _cut_off(exc):
            raise NotJsonError(f"cut off: the text ends before the JSON does: {exc}") from None
        if text.lstrip().startswith("<"):
            raise NotJsonError(f"an HTML or XML page, not JSON: {exc}") from None
        raise NotJsonError(str(exc)) from None
    except RecursionError:
        raise NotJsonError(
            f"nested too deep to parse: more than about 1,000 levels, and records may nest at most {MAX_DEPTH}"
        ) from None
    except ValueError as exc:  # NaN, Infinity, a number that overflows, an integer too long
        if "integer string conversion" in str(exc):
            raise NotJsonError(
                f"an integer longer than {sys.get_int_max_str_digits()} digits, which cannot be read exactly"
            ) from None
        raise NotJsonError(str(exc)) from None


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0), without recursion,
    so it answers for values too deep for the Python stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in item if isinstance(child, dict | list))
    return deepest


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
        # orjson refuses integers beyond 64 bits and nesting beyond 254 levels. The standard
        # library takes both, but how deep it goes depends on the stack: MAX_DEPTH decides.
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except RecursionError:
            raise NestingError(depth(value)) from None
        if text.count("[") + text.count("{") > MAX_DEPTH and (found := depth(value)) > MAX_DEPTH:
            raise NestingError(found)
        return text.encode("utf-8")
