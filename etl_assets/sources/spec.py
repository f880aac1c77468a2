"""Extract specs: the YAML file that says which APIs to extract, in dlt's vocabulary.

One file describes one source::

    name: demo_source                 # Dagster group of the assets (default "extracts")
    client:
      base_url: ${ETL_DEMO_SOURCE_URL:-http://127.0.0.1:8765}
      headers: {Authorization: "Bearer ${DEMO_TOKEN}"}
      paginator: {type: offset, limit: 1000, offset_param: skip, limit_param: limit,
                  total_path: total}          # or total_header: X-Total-Count
      retries: {max_attempts: 5, backoff_seconds: 0.5, max_backoff_seconds: 30}
      request_timeout_seconds: 60
      max_in_flight: 4                  # requests in flight when the total is known
    resources:
      - name: patients
        primary_key: id
        endpoint: {path: /patients, params: {}, data_selector: items}

Every mistake is reported at load time as a :class:`SpecError` naming the file, the
resource and the key, so a broken file never gets as far as a run.
"""

import re
from datetime import date
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from etl_assets.errors import SpecError
from etl_assets.settings import IDENTIFIER
from etl_assets.sources import templates
from etl_assets.sources.incremental import IncrementalSpec
from etl_assets.sources.partitions import PERIODS, PartitionSpec, check_start
from etl_assets.sources.selectors import parse_selector

PAGINATOR_TYPES = ("offset", "page_number", "json_link", "header_link", "cursor", "keyset")
MAX_NAME_LENGTH = 59  # "stg_" + name must fit PostgreSQL's 63-character identifiers
DEFAULT_MAX_IN_FLIGHT = 4
"""Requests in flight for offset paging with a known total. Measured in ``bench/``: with
20 ms of latency and pages of 100, one request at a time reads about 4,500 records/s and four
about 16,000; more adds little on two cores and only loads the source harder."""
MAX_IN_FLIGHT = 32
PATH_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%/")
"""What RFC 3986 allows in a path (``%`` only as an escape): no space, double quote, backslash
or non-ASCII look-alike (a server that normalises Unicode reads ``\u2025`` as ``..``)."""
ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c|[01][0-9a-f]|7f)", re.IGNORECASE)
"""Percent-encoded ``.``, ``/``, ``\\`` and control characters: servers that decode before
routing turn ``%2e%2e`` into ``..``."""
BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")
USERINFO = re.compile(r"(?<=//)[^/?#]*@")


@dataclass(frozen=True)
class PaginatorSpec:
    """How pages are requested, in dlt's vocabulary (see :mod:`etl_assets.sources.paginators`).

    Only the fields of the chosen ``type`` matter; ``limit_param`` is required for offset paging
    and optional for the others (when set, ``limit`` is sent and a shorter page is the last).
    """

    type: str = "offset"
    limit: int = 100
    offset_param: str = "offset"
    limit_param: str | None = "limit"
    total_path: str | None = None
    total_header: str | None = None
    page_param: str = "page"
    base_page: int = 1
    total_is: str = "pages"
    next_url_path: str | None = None
    links_next_key: str = "next"
    cursor_path: str | None = None
    cursor_param: str = "cursor"
    stop_on_repeat: bool = True
    """Stop at the first page that brings no record not already read in this run, when no total
    says more is to come (field case C2)."""
    max_pages_without_progress: int = 3
    """The hard cap: this many pages in a row without a new record stop the run, whatever else."""


@dataclass(frozen=True)
class RetrySpec:
    """Retries on connection errors, 429 and 5xx, with exponential backoff."""

    max_attempts: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0


@dataclass(frozen=True)
class ExtractSpec:
    """One resource of a source: everything a run needs to extract it."""

    name: str
    group: str
    base_url: str
    path: str
    primary_key: tuple[str, ...]
    paginator: PaginatorSpec
    retries: RetrySpec = field(default_factory=RetrySpec)
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    data_selector: str | None = None
    request_timeout_seconds: float = 60.0
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    description: str | None = None
    source_file: str = "<inline>"
    incremental: IncrementalSpec | None = None
    partitions: PartitionSpec | None = None

    @property
    def table_name(self) -> str:
        return f"stg_{self.name}"


class _Reader:
    """Walks a parsed YAML mapping and reports errors with their location."""

    def __init__(self, file: str, resource: str | None = None) -> None:
        self.file = file
        self.resource = resource

    def fail(self, key: str, reason: str) -> SpecError:
        where = f"{self.file}: "
        if self.resource is not None:
            where += f"resource {self.resource!r}: "
        return SpecError(f"{where}key {key!r}: {reason}")

    def mapping(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, got {type(value).__name__}")
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise self.fail(
                f"{key}.{unknown[0]}" if key else unknown[0],
                f"is not a known key (known: {', '.join(sorted(allowed))})",
            )
        return value

    def string(self, value: Any, key: str, *, template: bool = False) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        self.printable(value, key)
        if template and (why := templates.check_template(value)):
            raise self.fail(key, why)
        return value

    def printable(self, value: str, key: str) -> None:
        """No control characters: a NUL reaches PostgreSQL as an error mid-run, a line break
        splits an HTTP header; better refused here, naming the key."""
        bad = next((i for i, c in enumerate(value) if ord(c) < 32 or ord(c) == 127), None)
        if bad is not None and value[bad] in "\r\n":
            raise self.fail(key, "must not contain a line break")
        if bad is not None:
            raise self.fail(key, f"must not contain control characters (found {value[bad]!r} at position {bad})")

    def integer(self, value: Any, key: str, *, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be a whole number from {low} to {high}, got {value!r}")
        return value

    def number(self, value: Any, key: str, *, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.fail(key, f"must be a number from {low} to {high}, got {value!r}")
        return float(value)

    def param_name(self, value: Any, key: str) -> str:
        text = self.string(value, key)
        if not all(c.isalnum() or c in "_-.[]$" for c in text):
            raise self.fail(key, f"must be a plain query parameter name, got {value!r}")
        return text


def _path_problem(path: str) -> str | None:
    """Why ``path`` cannot be appended to ``client.base_url``, or None when it can.

    The host of every request is ``client.base_url``'s, where the credentials go: a path must
    neither name another host (``//host``, ``http://``) nor climb out of the API's folder
    (``..``, also percent-encoded or with backslashes), nor smuggle query parameters past
    ``endpoint.params``.
    """
    if not path.startswith("/"):
        return "the host comes from client.base_url"
    if "//" in path:
        return "no '//': the host comes from client.base_url"
    if "?" in path or "#" in path:
        return "no '?' or '#': query parameters go in endpoint.params"
    if "\\" in path:
        return "no backslash: some servers read it as '/'"
    bad = next((c for c in path if c not in PATH_CHARACTERS), None)
    if bad is not None:
        return f"{bad!r} is not allowed in a URL path; percent-encode it"
    if ".." in path or "." in path.split("/"):
        return "no '..' and no '.' segment"
    if found := ENCODED_SEPARATOR.search(path):
        return f"no percent-encoded '.', '/', backslash or control character, found {found.group(0)}"
    if BAD_ESCAPE.search(path):
        return "a '%' must start a percent-escape of two hex digits"
    return None


def _base_url_problem(url: str) -> str | None:
    """Why a literal ``client.base_url`` cannot be used, or None (``${VAR}`` parts are checked
    when a run resolves them)."""
    if "${" in url:
        return None if url.startswith(("http://", "https://", "${")) else "must start with http:// or https://"
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if not parts.hostname or any(c.isspace() for c in url):
        return "must be a URL with a host and no spaces"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query string or fragment: query parameters go in endpoint.params"
    return None


_COMMON_KEYS = {"type", "limit", "limit_param", "stop_on_repeat", "max_pages_without_progress", "total_path",
                "total_header"}
_TYPE_KEYS: dict[str, set[str]] = {
    "offset": {"offset_param"},
    "page_number": {"page_param", "base_page", "total_is"},
    "json_link": {"next_url_path"},
    "header_link": {"links_next_key"},
    "cursor": {"cursor_path", "cursor_param"},
    "keyset": {"cursor_path", "cursor_param"},
}


def _selector(reader: _Reader, value: Any, key: str) -> str:
    reader.string(value, key)
    try:
        parse_selector(value)
    except ValueError as exc:
        raise reader.fail(key, str(exc)) from None
    return value


def _paginator(reader: _Reader, raw: Any, key: str, base: PaginatorSpec | None) -> PaginatorSpec:
    if raw is not None and not isinstance(raw, dict):
        raise reader.fail(key, f"must be a mapping, got {type(raw).__name__}")
    kind = (raw or {}).get("type", base.type if base else "offset")
    if kind not in PAGINATOR_TYPES:
        raise reader.fail(f"{key}.type", f"must be one of {', '.join(PAGINATOR_TYPES)}, got {kind!r}")
    data = reader.mapping(raw, key, _COMMON_KEYS | _TYPE_KEYS[kind])
    # A resource that switches style starts from that style's defaults, not the client's.
    start = base if base is not None and base.type == kind else PaginatorSpec(
        type=kind, limit_param="limit" if kind == "offset" else None
    )
    limit_param = data.get("limit_param", start.limit_param)
    if kind == "offset" or limit_param is not None:
        limit_param = reader.param_name(limit_param, f"{key}.limit_param")
    spec = PaginatorSpec(
        type=kind,
        limit=reader.integer(data.get("limit", start.limit), f"{key}.limit", low=1, high=100_000),
        offset_param=reader.param_name(data.get("offset_param", start.offset_param), f"{key}.offset_param"),
        limit_param=limit_param,
        total_path=data.get("total_path", start.total_path),
        total_header=data.get("total_header", start.total_header),
        page_param=reader.param_name(data.get("page_param", start.page_param), f"{key}.page_param"),
        base_page=reader.integer(data.get("base_page", start.base_page), f"{key}.base_page", low=0, high=1),
        total_is=data.get("total_is", start.total_is),
        next_url_path=data.get("next_url_path", start.next_url_path),
        links_next_key=reader.param_name(data.get("links_next_key", start.links_next_key), f"{key}.links_next_key"),
        cursor_path=data.get("cursor_path", start.cursor_path),
        cursor_param=reader.param_name(data.get("cursor_param", start.cursor_param), f"{key}.cursor_param"),
        stop_on_repeat=data.get("stop_on_repeat", start.stop_on_repeat),
        max_pages_without_progress=reader.integer(
            data.get("max_pages_without_progress", start.max_pages_without_progress),
            f"{key}.max_pages_without_progress", low=1, high=10_000,
        ),
    )
    if not isinstance(spec.stop_on_repeat, bool):
        raise reader.fail(f"{key}.stop_on_repeat", f"must be true or false, got {spec.stop_on_repeat!r}")
    if spec.total_is not in ("pages", "records"):
        raise reader.fail(f"{key}.total_is", f"must be pages or records, got {spec.total_is!r}")
    if spec.total_path is not None:
        _selector(reader, spec.total_path, f"{key}.total_path")
    if spec.total_header is not None:
        reader.param_name(spec.total_header, f"{key}.total_header")
    if spec.total_path and spec.total_header:
        raise reader.fail(key, "give total_path or total_header, not both")
    if kind == "json_link":
        if spec.next_url_path is None:
            raise reader.fail(f"{key}.next_url_path", "is required for a json_link paginator (e.g. next, links.next)")
        _selector(reader, spec.next_url_path, f"{key}.next_url_path")
    if kind in ("cursor", "keyset"):
        if spec.cursor_path is None:
            example = "next_cursor" if kind == "cursor" else "id, the key the API sorts by"
            raise reader.fail(f"{key}.cursor_path", f"is required for a {kind} paginator (e.g. {example})")
        _selector(reader, spec.cursor_path, f"{key}.cursor_path")
    own = {"offset": "offset_param", "page_number": "page_param", "cursor": "cursor_param",
           "keyset": "cursor_param"}.get(kind)
    if own is not None and getattr(spec, own) == spec.limit_param:
        raise reader.fail(f"{key}.limit_param", f"must differ from {own}")
    return spec


def _retries(reader: _Reader, raw: Any) -> RetrySpec:
    data = reader.mapping(raw, "client.retries", {"max_attempts", "backoff_seconds", "max_backoff_seconds"})
    default = RetrySpec()
    return RetrySpec(
        max_attempts=reader.integer(
            data.get("max_attempts", default.max_attempts), "client.retries.max_attempts", low=1, high=100
        ),
        backoff_seconds=reader.number(
            data.get("backoff_seconds", default.backoff_seconds), "client.retries.backoff_seconds", low=0, high=3600
        ),
        max_backoff_seconds=reader.number(
            data.get("max_backoff_seconds", default.max_backoff_seconds),
            "client.retries.max_backoff_seconds",
            low=0,
            high=86_400,
        ),
    )


def _scalar_params(reader: _Reader, raw: Any, key: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise reader.fail(key, f"must be a mapping, got {type(raw).__name__}")
    params: dict[str, Any] = {}
    for name, value in raw.items():
        reader.param_name(name, f"{key}.{name}")
        if isinstance(value, str):
            reader.printable(value, f"{key}.{name}")
            if why := templates.check_template(value):
                raise reader.fail(f"{key}.{name}", why)
        elif value is not None and not isinstance(value, bool | int | float):
            raise reader.fail(f"{key}.{name}", f"must be a string, number or boolean, got {value!r}")
        params[str(name)] = value
    return params


def _headers(reader: _Reader, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise reader.fail("client.headers", f"must be a mapping, got {type(raw).__name__}")
    headers: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name or not all(c.isalnum() or c == "-" for c in name):
            raise reader.fail(f"client.headers.{name}", "is not a valid header name")
        text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        headers[name] = reader.string(text, f"client.headers.{name}", template=True)  # no line breaks either
    return headers


def parse_extracts(document: Any, *, source_file: str = "<inline>") -> list[ExtractSpec]:
    """Validate a parsed extracts document and return one spec per resource."""
    top = _Reader(source_file)
    data = top.mapping(document, "", {"name", "client", "resources"})
    group = data.get("name", "extracts")
    if not isinstance(group, str) or not IDENTIFIER.match(group):
        raise top.fail("name", f"must be a lower-case identifier, got {group!r}")
    client = top.mapping(
        data.get("client"),
        "client",
        {"base_url", "headers", "paginator", "retries", "request_timeout_seconds", "max_in_flight"},
    )
    base_url = top.string(client.get("base_url"), "client.base_url", template=True)
    if why := _base_url_problem(base_url):
        shown = USERINFO.sub("***@", base_url)  # a password written into the file stays out of the error
        raise top.fail("client.base_url", f"{why}, got {shown!r}")
    headers = _headers(top, client.get("headers"))
    paginator = _paginator(top, client.get("paginator"), "client.paginator", None)
    retries = _retries(top, client.get("retries"))
    request_timeout = top.number(
        client.get("request_timeout_seconds", 60), "client.request_timeout_seconds", low=0.1, high=3600
    )
    max_in_flight = top.integer(
        client.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT), "client.max_in_flight", low=1, high=MAX_IN_FLIGHT
    )
    resources = data.get("resources")
    if not isinstance(resources, list) or not resources:
        raise top.fail("resources", "must be a non-empty list of resources")

    specs: list[ExtractSpec] = []
    seen: set[str] = set()
    for position, raw in enumerate(resources):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = name if isinstance(name, str) else f"#{position + 1}"
        reader = _Reader(source_file, label)
        res = reader.mapping(raw, "", {"name", "primary_key", "endpoint", "description"})
        if not isinstance(name, str) or not IDENTIFIER.match(name) or len(name) > MAX_NAME_LENGTH:
            raise reader.fail(
                "name",
                "must be a lower-case identifier (letters, digits, underscore, not starting "
                f"with a digit, at most {MAX_NAME_LENGTH} characters), got {name!r}",
            )
        if name in seen:
            raise reader.fail("name", "is used by two resources")
        seen.add(name)
        primary_key = res.get("primary_key")
        keys = [primary_key] if isinstance(primary_key, str) else primary_key
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
            raise reader.fail("primary_key", f"must be a field name or a list of them, got {primary_key!r}")
        for k in keys:
            reader.printable(k, "primary_key")
        description = res.get("description")
        if description is not None and not isinstance(description, str):
            raise reader.fail("description", f"must be a string, got {type(description).__name__}")
        endpoint_raw = res.get("endpoint")
        if isinstance(endpoint_raw, str):
            endpoint_raw = {"path": endpoint_raw}
        endpoint = reader.mapping(
            endpoint_raw, "endpoint", {"path", "params", "data_selector", "paginator", "incremental", "partitions"}
        )
        path = reader.string(endpoint.get("path"), "endpoint.path")
        if why := _path_problem(path):
            raise reader.fail("endpoint.path", f"must be a plain path starting with '/' ({why}), got {path!r}")
        selector = endpoint.get("data_selector")
        if selector is not None:
            reader.string(selector, "endpoint.data_selector")
            try:
                parse_selector(selector)
            except ValueError as exc:
                raise reader.fail("endpoint.data_selector", str(exc)) from None
        own_paginator = endpoint.get("paginator")
        specs.append(
            ExtractSpec(
                name=name,
                group=group,
                base_url=base_url,
                path=path,
                primary_key=tuple(keys),
                paginator=(
                    _paginator(reader, own_paginator, "endpoint.paginator", paginator)
                    if own_paginator is not None
                    else paginator
                ),
                retries=retries,
                headers=headers,
                params=_scalar_params(reader, endpoint.get("params"), "endpoint.params"),
                data_selector=selector,
                request_timeout_seconds=request_timeout,
                max_in_flight=max_in_flight,
                description=description,
                source_file=source_file,
                incremental=_incremental(reader, endpoint.get("incremental")),
                partitions=_partitions(reader, endpoint.get("partitions")),
            )
        )
        if specs[-1].incremental is not None and specs[-1].partitions is not None:
            raise reader.fail("endpoint.partitions", "give incremental or partitions, not both")
        _check_parameter_names(reader, specs[-1])
    return specs


def _incremental(reader: _Reader, raw: Any) -> IncrementalSpec | None:
    if raw is None:
        return None
    data = reader.mapping(raw, "endpoint.incremental", {"cursor_path", "param", "initial_value"})
    for required in ("cursor_path", "param", "initial_value"):
        if required not in data:
            raise reader.fail(f"endpoint.incremental.{required}", "is required for an incremental extract")
    initial = data["initial_value"]
    if isinstance(initial, str):
        reader.printable(initial, "endpoint.incremental.initial_value")
    elif isinstance(initial, date):
        raise reader.fail(
            "endpoint.incremental.initial_value",
            f"must be a string or a number; YAML read {initial.isoformat()} as a date or time, so quote it "
            f"(initial_value: \"{initial.isoformat()}\")",
        )
    elif isinstance(initial, bool) or not isinstance(initial, int | float):
        raise reader.fail("endpoint.incremental.initial_value", f"must be a string or a number, got {initial!r}")
    return IncrementalSpec(
        cursor_path=_selector(reader, data["cursor_path"], "endpoint.incremental.cursor_path"),
        param=reader.param_name(data["param"], "endpoint.incremental.param"),
        initial_value=initial,
    )


def _partitions(reader: _Reader, raw: Any) -> PartitionSpec | None:
    if raw is None:
        return None
    data = reader.mapping(raw, "endpoint.partitions", {"period", "start", "start_param", "end_param"})
    for required in ("start", "start_param", "end_param"):
        if required not in data:
            raise reader.fail(f"endpoint.partitions.{required}", "is required for a partitioned extract")
    period = data.get("period", "daily")
    if period not in PERIODS:
        raise reader.fail("endpoint.partitions.period", f"must be one of {', '.join(PERIODS)}, got {period!r}")
    if why := check_start(data["start"]):
        raise reader.fail("endpoint.partitions.start", why)
    spec = PartitionSpec(
        period=period,
        start=data["start"],
        start_param=reader.param_name(data["start_param"], "endpoint.partitions.start_param"),
        end_param=reader.param_name(data["end_param"], "endpoint.partitions.end_param"),
    )
    if spec.start_param == spec.end_param:
        raise reader.fail("endpoint.partitions.end_param", "must differ from start_param")
    return spec


def _check_parameter_names(reader: _Reader, spec: ExtractSpec) -> None:
    """A query parameter has one owner: the endpoint, the paginator or the watermark."""
    paginator = spec.paginator
    owned = {
        "offset": [("offset_param", paginator.offset_param)],
        "page_number": [("page_param", paginator.page_param)],
        "cursor": [("cursor_param", paginator.cursor_param)],
        "keyset": [("cursor_param", paginator.cursor_param)],
    }.get(paginator.type, [])
    if paginator.limit_param:
        owned.append(("limit_param", paginator.limit_param))
    if spec.incremental is not None:
        owned.append(("incremental.param", spec.incremental.param))
    if spec.partitions is not None:
        owned += [("partitions.start_param", spec.partitions.start_param),
                  ("partitions.end_param", spec.partitions.end_param)]
    seen: dict[str, str] = {}
    for key, name in owned:
        endpoint_key = key.startswith(("incremental", "partitions"))
        if name in seen:
            raise reader.fail(f"endpoint.{key}" if endpoint_key else f"paginator.{key}",
                              f"{name!r} is already sent as {seen[name]}")
        if endpoint_key and name in spec.params:
            raise reader.fail(f"endpoint.{key}", f"{name!r} is also in endpoint.params; the run sends it itself")
        if not endpoint_key and name in spec.params:
            raise reader.fail(f"endpoint.params.{name}", f"is sent by the paginator ({key}); remove it here")
        seen[name] = key


def load_extracts(path: str | Path) -> list[ExtractSpec]:
    """Read and validate an extracts file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{file}: cannot read the extracts file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{file}: the extracts file is not UTF-8: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{file}: not valid YAML: {exc}") from None
    return parse_extracts(document, source_file=str(file))
