"""Turning a page of source records into rows: key, canonical JSON text and its hash.

Work that every row needs is done once here, in one pass: the key is read, NUL
characters are removed (PostgreSQL cannot store them in text or jsonb, and SQLite must
store the same thing so both backends agree), the record is encoded once, to UTF-8 bytes
that go to the database as they are, and the hash is taken of exactly those bytes, so an
identical re-read is ``unchanged``.
"""

import hashlib
from dataclasses import dataclass, field
from typing import Any

from etl_assets import jsoncodec
from etl_assets.errors import MalformedPageError


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


def record_key(record: dict[str, Any], primary_key: tuple[str, ...]) -> str | None:
    """The text key of a record, or None when a key field is missing or unusable."""
    parts: list[str] = []
    for name in primary_key:
        value = record.get(name)
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
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
                f"{where}: primary key {'/'.join(primary_key)} is missing, null or not a "
                f"scalar ({jsoncodec.dumps(shown)[:200]})",
                extract=extract,
            )
        nul_fields: list[str] = []
        if "\x00" in key:
            key = key.replace("\x00", "")
            nul_fields.append("<primary key>")
        try:
            data = jsoncodec.dumps_bytes(record)
        except (TypeError, ValueError, RecursionError) as exc:
            # ValueError covers UnicodeEncodeError: a lone surrogate (\ud800) is not UTF-8
            raise MalformedPageError(
                f"{where}, key {key!r}: cannot encode: {type(exc).__name__}: {str(exc)[:200]}", extract=extract
            ) from None
        if b"\\u0000" in data:
            record = _strip_nul(record, "", nul_fields)
            data = jsoncodec.dumps_bytes(record)
        if nul_fields:
            warnings.append(
                f"extract {extract!r}: record {key!r}: removed NUL characters from {', '.join(sorted(nul_fields))}"
            )
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if key in rows:
            duplicates += 1
            del rows[key]
        rows[key] = (data, digest)
    return PreparedPage(rows=rows, received=len(records), duplicates=duplicates, warnings=warnings)
