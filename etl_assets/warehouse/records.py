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


def prepare_page(
    records: list[Any], *, extract: str, primary_key: tuple[str, ...], skip: int
) -> PreparedPage:
    """Validate and encode a page; raise :class:`MalformedPageError` naming the record."""
    rows: dict[str, tuple[bytes, str]] = {}
    warnings: list[str] = []
    duplicates = 0
    for position, record in enumerate(records):
        where = f"extract {extract!r}, skip={skip}, record {skip + position} (position {position} in the page)"
        if not isinstance(record, dict):
            raise MalformedPageError(
                f"{where}: records must be JSON objects, got {type(record).__name__}", extract=extract
            )
        key = record_key(record, primary_key)
        if key is None:
            shown = {name: record.get(name, "<missing>") for name in primary_key}
            raise MalformedPageError(
                f"{where}: {_missing_key_reason(record, primary_key)} ({_excerpt(shown)})", extract=extract
            )
        nul_fields: list[str] = []
        if "\x00" in key:
            key = key.replace("\x00", "")
            nul_fields.append("<primary key>")
        if len(key) * 4 > MAX_KEY_BYTES and (size := len(key.encode("utf-8", "surrogatepass"))) > MAX_KEY_BYTES:
            raise MalformedPageError(
                f"{where}: the primary key is {size} bytes long, more than the {MAX_KEY_BYTES} allowed "
                f"(starting {key[:40]!r})",
                extract=extract,
            )
        try:
            data = jsoncodec.dumps_bytes(record)
        except jsoncodec.NestingError as exc:
            raise MalformedPageError(f"{where}, key {key!r}: the record is {exc}", extract=extract) from None
        except (TypeError, ValueError, RecursionError) as exc:
            # ValueError covers UnicodeEncodeError: a lone surrogate (\ud800) is not UTF-8
            raise MalformedPageError(
                f"{where}, key {key!r}: cannot encode: {type(exc).__name__}: {str(exc)[:200]}", extract=extract
            ) from None
        if b"\\u0000" in data:
            record = _strip_nul(record, "", nul_fields)
            data = jsoncodec.dumps_bytes(record)
        if len(data) > MAX_RECORD_BYTES:
            raise MalformedPageError(
                f"{where}, key {key!r}: the record is {len(data)} bytes as JSON, more than the "
                f"{MAX_RECORD_BYTES} allowed",
                extract=extract,
            )
        if nul_fields:
            warnings.append(
                f"extract {extract!r}: record {key!r}: removed NUL characters from {', '.join(sorted(set(nul_fields)))}"
            )
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if key in rows:
            duplicates += 1
            del rows[key]
        rows[key] = (data, digest)
    return PreparedPage(rows=rows, received=len(records), duplicates=duplicates, warnings=warnings)
