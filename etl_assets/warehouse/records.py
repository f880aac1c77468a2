"""Turning a page of source records into rows: key, canonical JSON text and its hash.

Work that every row needs is done once here, in one pass: the key is read, NUL
characters are removed (PostgreSQL cannot store them in text or jsonb, and SQLite must
store the same thing so both backends agree), the record is encoded once, to UTF-8 bytes
that go to the database as they are, and the hash is taken of exactly those bytes, so an
identical re-read is ``unchanged``.

Records PostgreSQL would refuse are refused here, on SQLite too, so both backends store the
same things and the error names the record instead of the whole page: a key longer than
:data:`MAX_KEY_BYTES` (a btree index entry holds about 2,700 bytes) and a record longer than
:data:`MAX_RECORD_BYTES` as JSON (jsonb holds 256 MiB, and a record of small numbers takes
up to six times its text there).
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from etl_assets import jsoncodec
from etl_assets.errors import MalformedPageError

MAX_KEY_BYTES = 2048
"""Longest record key stored, in UTF-8 bytes (a composite key counts as its JSON array)."""

MAX_RECORD_BYTES = 32 * 1024 * 1024
"""Longest record stored, in bytes of canonical JSON."""


@dataclass
class PreparedPage:
    """A page ready to write: ``rows`` maps record key to (canonical JSON as UTF-8, hash),
    last one wins."""

    rows: dict[str, tuple[bytes, str]]
    received: int
    duplicates: int
    warnings: list[str] = field(default_factory=list)


def _strip_nul(value: Any, path: str, found: list[str]) -> Any:
    if isinstance(value, str):
        if "\x00" in value:
            found.append(path)
            return value.replace("\x00", "")
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            clean_key = key.replace("\x00", "") if "\x00" in key else key
            if clean_key != key:
                found.append(f"{path}.{clean_key}" if path else clean_key)
            out[clean_key] = _strip_nul(item, f"{path}.{clean_key}" if path else clean_key, found)
        return out
    if isinstance(value, list):
        return [_strip_nul(item, f"{path}[{i}]", found) for i, item in enumerate(value)]
    return value


def _key_problem(value: Any) -> str | None:
    """Why a primary key field's value cannot identify a record, or None when it can."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'}), not a string or number"
    if isinstance(value, dict):
        return "an object, not a string or number"
    if isinstance(value, list):
        return "an array, not a string or number"
    return None


def record_key(record: dict[str, Any], primary_key: tuple[str, ...]) -> str | None:
    """The text key of a record, or None when a key field is missing or unusable."""
    parts: list[str] = []
    for name in primary_key:
        value = record.get(name)
        if type(value) is str or type(value) is int:  # nearly every key: no further checks
            parts.append(str(value))
            continue
        if _key_problem(value) is not None:
            return None
        if isinstance(value, float) and not value.is_integer():
            parts.append(repr(value))
        elif isinstance(value, float):
            parts.append(str(int(value)))
        else:
            parts.append(str(value))
    if len(parts) == 1:
        return parts[0]
    return jsoncodec.dumps(parts)


def _missing_key_reason(record: dict[str, Any], primary_key: tuple[str, ...]) -> str:
    """The first primary key field that is missing or unusable, and why."""
    for name in primary_key:
        if name not in record:
            return f"primary key {name} is missing"
        problem = _key_problem(record[name])
        if problem is not None:
            return f"primary key {name} is {problem}"
    raise AssertionError("record_key refused a usable key")


def _excerpt(value: Any) -> str:
    """The start of ``value`` as JSON for an error message, even when it cannot be encoded
    (a lone surrogate, nesting past the limit): the message must not fail in its turn."""
    try:
        return jsoncodec.dumps(value)[:200]
    except (TypeError, ValueError):
        return repr(value)[:200]


def _where(extract: str, skip: int, position: int) -> str:
    return f"extract {extract!r}, skip={skip}, record {skip + position} (position {position} in the page)"


def prepare_page(
    records: list[Any], *, extract: str, primary_key: tuple[str, ...], skip: int
) -> PreparedPage:
    """Validate and encode a page; raise :class:`MalformedPageError` naming the record.

    This runs for every record of every page, on the thread that parses pages while the
    main thread writes: the common case (a string or integer key, a record orjson encodes,
    no NUL) calls nothing but the encoder and the hash, and an error message is only built
    for the record that fails."""
    rows: dict[str, tuple[bytes, str]] = {}
    warnings: list[str] = []
    duplicates = 0
    max_key_bytes = MAX_KEY_BYTES
    max_record_bytes = MAX_RECORD_BYTES
    single = primary_key[0] if len(primary_key) == 1 else None
    dumps, sort_keys = orjson.dumps, orjson.OPT_SORT_KEYS
    blake2b = hashlib.blake2b
    for position, record in enumerate(records):
        if type(record) is not dict and not isinstance(record, dict):
            raise MalformedPageError(
                f"{_where(extract, skip, position)}: records must be JSON objects, got {type(record).__name__}",
                extract=extract,
            )
        key: Any = record.get(single) if single is not None else None
        if type(key) is str:
            pass
        elif type(key) is int:
            key = str(key)
        else:
            key = record_key(record, primary_key)
            if key is None:
                shown = {name: record.get(name, "<missing>") for name in primary_key}
                raise MalformedPageError(
                    f"{_where(extract, skip, position)}: {_missing_key_reason(record, primary_key)} "
                    f"({_excerpt(shown)})",
                    extract=extract,
                )
        nul_fields: list[str] | None = None
        if "\x00" in key:
            key = key.replace("\x00", "")
            nul_fields = ["<primary key>"]
        if len(key) * 4 > max_key_bytes and (size := len(key.encode("utf-8", "surrogatepass"))) > max_key_bytes:
            raise MalformedPageError(
                f"{_where(extract, skip, position)}: the primary key is {size} bytes long, more than the "
                f"{max_key_bytes} allowed (starting {key[:40]!r})",
                extract=extract,
            )
        try:
            # An exact copy: orjson's own bytes keep its 8 kB write buffer (see dumps_bytes).
            data = memoryview(dumps(record, option=sort_keys)).tobytes()
        except TypeError:
            data = _dumps_exact(record, _where(extract, skip, position), key, extract)
        if b"\\u0000" in data:
            nul_fields = nul_fields or []
            record = _strip_nul(record, "", nul_fields)
            data = jsoncodec.dumps_bytes(record)
        if len(data) > max_record_bytes:
            raise MalformedPageError(
                f"{_where(extract, skip, position)}, key {key!r}: the record is {len(data)} bytes as JSON, "
                f"more than the {max_record_bytes} allowed",
                extract=extract,
            )
        if nul_fields:
            warnings.append(
                f"extract {extract!r}: record {key!r}: removed NUL characters from {', '.join(sorted(set(nul_fields)))}"
            )
        if key in rows:
            duplicates += 1
            del rows[key]
        rows[key] = (data, blake2b(data, digest_size=16).hexdigest())
    return PreparedPage(rows=rows, received=len(records), duplicates=duplicates, warnings=warnings)


def _dumps_exact(record: dict[str, Any], where: str, key: str, extract: str) -> bytes:
    """Encode what orjson refuses (integers beyond 64 bits, deep nesting), or say why it cannot be."""
    try:
        return jsoncodec.dumps_bytes(record)
    except jsoncodec.NestingError as exc:
        raise MalformedPageError(f"{where}, key {key!r}: the record is {exc}", extract=extract) from None
    except (TypeError, ValueError, RecursionError) as exc:
        # ValueError covers UnicodeEncodeError: a lone surrogate (\ud800) is not UTF-8
        raise MalformedPageError(
            f"{where}, key {key!r}: cannot encode: {type(exc).__name__}: {str(exc)[:200]}", extract=extract
        ) from None
