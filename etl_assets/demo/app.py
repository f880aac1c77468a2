"""The demo source: a paginated JSON API with injectable faults and a request log.

``GET /{collection}?skip=S&limit=L`` answers ``{"total": T, "items": [...]}`` plus an
``X-Total-Count: T`` header, the shape of many real offset-paginated APIs. The same records
are served in the other common paging styles too: ``/paged/{collection}?page=P&per_page=N``
(``{"page", "items"}``, no total), ``/cursor/{collection}?cursor=C&limit=L`` (``{"items",
"next_cursor"}``, an opaque token) and ``/fhir/{collection}?_count=N&_offset=S`` (a FHIR
``searchset`` Bundle with ``entry[*].resource`` and a ``next`` link), and
``/keyset/{collection}?id_gt=K&limit=L`` (``{"items"}``, records whose ``id`` sorts after ``K``
in id order: integer ids as numbers, text ids as text). Everything a
test needs to provoke and observe an extractor's failure handling lives on
:class:`DemoSource`: artificial latency, a page size cap, a wrong ``total``, faults, and a
log of every data request with what was actually served. The same knobs are reachable
over HTTP under ``/_control/`` for a server running in another process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from etl_assets.demo.collections import Collection, IndexedCollection
from etl_assets.demo.faults import Fault
from etl_assets.demo.records import ENCOUNTERS_PER_PATIENT, OBSERVATIONS_PER_PATIENT, encounter, observation, patient

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT_PARAM",
    "MAX_SKIP_PARAM",
    "DemoSource",
    "RequestRecord",
    "create_app",
    "default_source",
]

DEFAULT_LIMIT = 100
MAX_LATENCY_SECONDS = 60.0
"""The longest delay ``PUT /_control/latency`` accepts."""
MAX_LIMIT_PARAM = 100_000
"""A ``limit`` above this is refused with 400 rather than capped: it is a client bug."""
MAX_SKIP_PARAM = 10**12

NO_STATUS = 0
"""The status logged for ``hang`` and ``drop``, which never send one."""

_RAW_SEND = "etl_assets.demo.raw_send"
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_BODILESS_STATUSES = frozenset({204, 304})
_CURSOR = re.compile(r"c-([0-9a-f]{1,15})")
_DRIP_HEAD = b'{"total": 1000000, "items": [{"id": 0}'


@dataclass(frozen=True)
class RequestRecord:
    """One data request as the server saw and answered it.

    Attributes:
        path: request path, e.g. ``"/patients"``.
        skip: the ``skip`` asked for (0 when absent, -1 when not an integer).
        limit: the ``limit`` asked for, before any ``max_limit`` cap (100 when absent,
            -1 when not an integer).
        status: the status code sent, or 0 when none was (``hang``, ``drop``).
        action: ``"data"`` for a page, ``"error"`` for a 400 or 404, else the fault
            action served (``"status"``, ``"hang"``, ``"drip"``, ``"malformed"``, ``"drop"``).
    """

    path: str
    skip: int
    limit: int
    status: int
    action: str

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestRecord:
        """Rebuild a record from :meth:`to_dict` output, e.g. from ``GET /_control/requests``."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


class _ArmedFault:
    __slots__ = ("fault", "remaining")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.times


class DemoSource:
    """What the demo API serves and how it misbehaves; safe to change while it serves.

    The server runs its event loop in another thread than the test that drives it, so
    faults and the request log sit behind a lock. The plain attributes (``collections``,
    ``latency_seconds``, ``max_limit``, ``total_overrides``) are read afresh by every
    request and may be reassigned at any time.

    Args:
        collections: collection name to records, each served at ``/{name}``.
        latency_seconds: delay added to every data request before it is answered.
        max_limit: the largest page served; a request asking for more gets this many,
            like an API that silently caps the page size. ``None`` for no cap.
        total_overrides: collection name to the ``total`` to report instead of the real
            count, like an API whose total is an estimate.
        faults: faults to arm at once, as by :meth:`add_fault`.
        repeat_last_page: under ``/paged/``, a page number past the end serves the last
            page again instead of an empty one, as json-server 1.0 does (field case C2).
    """

    def __init__(
        self,
        collections: Mapping[str, Collection] | None = None,
        *,
        latency_seconds: float = 0.0,
        max_limit: int | None = None,
        total_overrides: Mapping[str, int] | None = None,
        faults: Iterable[Fault] = (),
        repeat_last_page: bool = False,
    ) -> None:
        self.collections: dict[str, Collection] = dict(collections or {})
        for name in self.collections:
            if not name or "/" in name:
                raise ValueError(f"collection name must be one non-empty path segment, got {name!r}")
        if max_limit is not None and max_limit < 1:
            raise ValueError(f"max_limit must be 1 or more, got {max_limit}")
        self.latency_seconds = latency_seconds
        self.max_limit = max_limit
        self.total_overrides: dict[str, int] = dict(total_overrides or {})
        self.repeat_last_page = repeat_last_page
        self._lock = threading.Lock()
        self._faults: list[_ArmedFault] = []
        self._requests: list[RequestRecord] = []
        for fault in faults:
            self.add_fault(fault)

    def add_fault(self, fault: Fault) -> None:
        """Arm ``fault`` after those already armed; the first matching fault wins."""
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        with self._lock:
            self._faults.append(_ArmedFault(fault))

    def clear_faults(self) -> int:
        """Disarm every fault; return how many were armed."""
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
        return count

    def faults(self) -> list[Fault]:
        """Return the armed faults, each with ``times`` set to the uses it has left."""
        with self._lock:
            return [dataclasses.replace(armed.fault, times=armed.remaining) for armed in self._faults]

    def take_fault(self, path: str, skip: int | None) -> Fault | None:
        """Return the first fault matching the request and use it up once, or ``None``."""
        with self._lock:
            for position, armed in enumerate(self._faults):
                if armed.fault.matches(path, skip):
                    if armed.remaining is not None:
                        armed.remaining -= 1
                        if armed.remaining == 0:
                            del self._faults[position]
                    return armed.fault
        return None

    def log_request(self, record: RequestRecord) -> None:
        """Append ``record`` to the request log."""
        with self._lock:
            self._requests.append(record)

    def requests(self, path: str | None = None) -> list[RequestRecord]:
        """Return the logged data requests in arrival order, optionally for one path only."""
        with self._lock:
            if path is None:
                return list(self._requests)
            return [record for record in self._requests if record.path == path]

    def clear_requests(self) -> int:
        """Empty the request log; return how many records it held."""
        with self._lock:
            count = len(self._requests)
            self._requests.clear()
        return count


def default_source(patients: int, *, latency_seconds: float = 0.0, max_limit: int | None = None) -> DemoSource:
    """Return a source serving generated patients with their encounters and observations.

    Args:
        patients: number of patients; encounters and observations scale with it by
            ``ENCOUNTERS_PER_PATIENT`` and ``OBSERVATIONS_PER_PATIENT``.
        latency_seconds: see :class:`DemoSource`.
        max_limit: see :class:`DemoSource`.
    """
    return DemoSource(
        {
            "patients": IndexedCollection(patients, patient),
            "encounters": IndexedCollection(patients * ENCOUNTERS_PER_PATIENT, encounter),
            "observations": IndexedCollection(patients * OBSERVATIONS_PER_PATIENT, observation),
        },
        latency_seconds=latency_seconds,
        max_limit=max_limit,
    )


def _dumps(value: Any) -> bytes:
    """Encode with orjson, or with the standard library when orjson refuses the value.

    orjson is several times faster but rejects integers beyond 64 bits, which a test may
    serve on purpose to check they survive an extract exactly.
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _first_after(collection: Collection, count: int, after: str) -> int:
    """The index of the first record whose id sorts after ``after`` (``count`` if none).

    An :class:`IndexedCollection` builds each record on request and is in id order, so it is
    bisected (reading it whole took about a second per page at 40,000 records); a list is
    read in one pass, as a test's list may change what it holds between pages."""
    if not isinstance(collection, IndexedCollection):
        return sum(1 for record in collection.page(0, count) if not _after(record, after))
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        if _after(collection.page(middle, 1)[0], after):
            high = middle
        else:
            low = middle + 1
    return low


def _after(record: Mapping[str, Any], after: str) -> bool:
    """Whether ``record``'s id sorts after ``after`` (numbers as numbers, anything else as text)."""
    key = record.get("id")
    if isinstance(key, int) and not isinstance(key, bool) and _INTEGER.fullmatch(after):
        return key > int(after)
    return str(key) > after


def _parse_param(params: QueryParams, name: str, default: int, ceiling: int) -> tuple[int, str | None]:
    """Return the parameter's value (-1 if not an integer) and the reason it is invalid, if it is."""
    raw = params.get(name)
    if raw is None:
        return default, None
    if not _INTEGER.fullmatch(raw):
        return -1, f"{name} must be an integer, got {raw[:40]!r}"
    value = int(raw)
    if value < 0:
        return value, f"{name} must be 0 or more, got {value}"
    if value > ceiling:
        return value, f"{name} must be at most {ceiling}, got {value}"
    return value, None


async def _send_body(
    send: Send, status: int, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()
) -> None:
    if status in _BODILESS_STATUSES:
        raw_headers, body = [], b""
    else:
        raw_headers = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode())]
    raw_headers.extend((key.encode("latin-1"), value.encode("latin-1")) for key, value in headers)
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
    await _send_body(send, status, _dumps({"error": message}), "application/json", headers)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _until_gone(receive: Receive, stopping: asyncio.Event) -> bool:
    """Wait until the client disconnects (return False) or the server stops (return True)."""
    disconnect = asyncio.ensure_future(_until_disconnect(receive))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        done, _ = await asyncio.wait({disconnect, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        disconnect.cancel()
        stop.cancel()
    return disconnect not in done


async def _close_connection(scope: Scope, receive: Receive) -> bool:
    """Close the request's TCP connection at once, sending nothing more; False if impossible.

    ASGI has no way to drop a connection, so this reaches for the transport behind
    uvicorn's ``send`` (a bound method of its request cycle, stashed in the scope by
    :class:`_DemoStarlette` before any middleware wraps it). It then waits for uvicorn to
    notice the disconnect, so uvicorn neither logs an error nor tries to send a 500.
    """
    cycle = getattr(scope.get(_RAW_SEND), "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        return False
    transport.abort()
    try:
        await asyncio.wait_for(_until_disconnect(receive), timeout=1.0)
    except asyncio.TimeoutError:
        pass
    return True


def _drip_bytes() -> Iterator[bytes]:
    """Yield a plausible, never-ending page one byte at a time."""
    for byte in _DRIP_HEAD:
        yield bytes((byte,))
    index = 1
    while True:
        for byte in b', {"id": %d}' % index:
            yield bytes((byte,))
        index += 1


class _DataEndpoint:
    """ASGI endpoint for ``GET /{collection}``: faults first, then validation, then the page.

    A raw ASGI callable rather than a request/response function because ``hang``,
    ``drip`` and ``drop`` need control that a Starlette ``Response`` cannot give.
    """

    def __init__(self, source: DemoSource, stopping: asyncio.Event, style: str = "offset") -> None:
        self.source = source
        self.stopping = stopping
        self.style = style

    def _position(self, params: QueryParams) -> tuple[int, str | None, int, str | None]:
        """``skip`` and ``limit`` of the request, whatever the paging style, with their errors."""
        if self.style == "paged":
            page, page_error = _parse_param(params, "page", 1, MAX_SKIP_PARAM)
            limit, limit_error = _parse_param(params, "per_page", DEFAULT_LIMIT, MAX_LIMIT_PARAM)
            if page_error is None and page < 1:
                page_error = f"page must be 1 or more, got {page}"
            return max(0, page - 1) * max(limit, 0), page_error, limit, limit_error
        if self.style == "fhir":
            skip, skip_error = _parse_param(params, "_offset", 0, MAX_SKIP_PARAM)
            limit, limit_error = _parse_param(params, "_count", DEFAULT_LIMIT, MAX_LIMIT_PARAM)
            return skip, skip_error, limit, limit_error
        if self.style == "keyset":
            limit, limit_error = _parse_param(params, "limit", DEFAULT_LIMIT, MAX_LIMIT_PARAM)
            self_after = params.get("id_gt")
            # The position is worked out against the collection in _body; -1 logs "from the start".
            return (-1 if self_after is None else 0), None, limit, limit_error
        if self.style == "cursor":
            limit, limit_error = _parse_param(params, "limit", DEFAULT_LIMIT, MAX_LIMIT_PARAM)
            token = params.get("cursor")
            if token is None:
                return 0, None, limit, limit_error
            match = _CURSOR.fullmatch(token)
            if match is None:
                return -1, f"cursor {token[:40]!r} was not issued by this server", limit, limit_error
            return int(match.group(1), 16), None, limit, limit_error
        skip, skip_error = _parse_param(params, "skip", 0, MAX_SKIP_PARAM)
        limit, limit_error = _parse_param(params, "limit", DEFAULT_LIMIT, MAX_LIMIT_PARAM)
        return skip, skip_error, limit, limit_error

    def _body(
        self, scope: Scope, name: str, skip: int, limit: int, collection: Collection, after: str | None = None
    ) -> tuple[bytes, list]:
        source = self.source
        cap = source.max_limit
        size = limit if cap is None else min(limit, cap)
        count = len(collection)
        if self.style == "paged" and source.repeat_last_page and skip >= count > 0 and size > 0:
            skip = (count - 1) // size * size  # json-server 1.0 serves the last page again
        if self.style == "keyset":
            # Records are served in id order after ``id_gt``: integer ids compare as numbers,
            # text ids (``pat-00000001``) as text.
            skip = 0 if after is None else _first_after(collection, count, after)
        items = collection.page(skip, size)
        total = source.total_overrides.get(name, count)
        if self.style == "paged":
            return _dumps({"page": skip // max(size, 1) + 1, "items": items}), []
        if self.style == "keyset":
            return _dumps({"items": items}), []
        if self.style == "cursor":
            after = skip + len(items)
            cursor = f"c-{after:x}" if items and after < count else None
            return _dumps({"items": items, "next_cursor": cursor}), []
        if self.style == "fhir":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            base = f"{scope['scheme']}://{host}/fhir/{name}"
            links = [{"relation": "self", "url": f"{base}?_count={limit}&_offset={skip}"}]
            if items and skip + len(items) < total:
                links.append({"relation": "next", "url": f"{base}?_count={limit}&_offset={skip + len(items)}"})
            entries = [
                {"fullUrl": f"{base}/{item.get('id')}", "resource": item, "search": {"mode": "match"}}
                for item in items
            ]
            bundle = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links, "entry": entries}
            return _dumps(bundle), []
        return _dumps({"total": total, "items": items}), [("x-total-count", str(total))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        source = self.source
        name = scope["path_params"]["collection"]
        path = scope["path"]
        params = QueryParams(scope["query_string"])
        skip, skip_error, limit, limit_error = self._position(params)

        if source.latency_seconds > 0:
            await asyncio.sleep(source.latency_seconds)

        fault = source.take_fault(path, skip if skip_error is None else None)
        if fault is not None:
            await self._inject(fault, path, skip, limit, scope, receive, send)
            return

        error = skip_error or limit_error
        if error is not None:
            source.log_request(RequestRecord(path, skip, limit, 400, "error"))
            await _send_error(send, 400, error)
            return
        collection = source.collections.get(name)
        if collection is None:
            source.log_request(RequestRecord(path, skip, limit, 404, "error"))
            await _send_error(send, 404, f"unknown collection {name!r}")
            return

        after = params.get("id_gt") if self.style == "keyset" else None
        body, headers = self._body(scope, name, skip, limit, collection, after)
        if self.style == "keyset" and after is not None:
            skip = int(after) if _INTEGER.fullmatch(after) else skip  # logged as the id asked after
        source.log_request(RequestRecord(path, skip, limit, 200, "data"))
        await _send_body(send, 200, body, "application/json", headers)

    async def _inject(
        self, fault: Fault, path: str, skip: int, limit: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        source = self.source
        action = fault.action
        if action == "status":
            source.log_request(RequestRecord(path, skip, limit, fault.status, action))
            headers = [] if fault.retry_after is None else [("retry-after", fault.retry_after)]
            await _send_error(send, fault.status, f"injected fault: HTTP {fault.status}", headers)
        elif action == "malformed":
            source.log_request(RequestRecord(path, skip, limit, 200, action))
            await _send_body(send, 200, fault.body.encode(), fault.content_type)
        elif action == "hang":
            source.log_request(RequestRecord(path, skip, limit, NO_STATUS, action))
            if await _until_gone(receive, self.stopping):
                await _close_connection(scope, receive)
        elif action == "drip":
            source.log_request(RequestRecord(path, skip, limit, 200, action))
            await self._drip(fault.drip_interval, scope, receive, send)
        elif action == "drop":
            source.log_request(RequestRecord(path, skip, limit, NO_STATUS, action))
            if not await _close_connection(scope, receive):
                raise RuntimeError("drop fault: this server does not expose its transport; failing the request instead")
        else:
            raise AssertionError(f"unhandled fault action {action!r}")

    async def _drip(self, interval: float, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        watcher = asyncio.ensure_future(_until_gone(receive, self.stopping))
        try:
            for byte in _drip_bytes():
                await send({"type": "http.response.body", "body": byte, "more_body": True})
                done, _ = await asyncio.wait({watcher}, timeout=interval)
                if done:
                    break
        finally:
            watcher.cancel()
        if watcher.done() and not watcher.cancelled() and watcher.result():
            await _close_connection(scope, receive)


class _DemoStarlette(Starlette):
    """Starlette that keeps the server's own ``send`` in the scope, for the ``drop`` fault."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_RAW_SEND] = send
        await super().__call__(scope, receive, send)


def _json(value: Any, status: int = 200) -> Response:
    return Response(_dumps(value), status_code=status, media_type="application/json")


def create_app(source: DemoSource) -> Starlette:
    """Return the ASGI app serving ``source``.

    Routes:
        ``GET /{collection}?skip=S&limit=L``: a page, ``{"total": T, "items": [...]}``.
        ``GET|POST|DELETE /_control/faults``: list, add (one fault object or a list of
        them, all or none), or remove all faults.
        ``GET|DELETE /_control/requests``: the request log (``?path=/patients`` to
        filter), or empty it.
        ``GET|PUT /_control/latency``: the delay added to every data request,
        ``{"seconds": 0.2}``; a PUT sets it for the requests that arrive after it.
        ``GET /_control/health``: ``{"ok": true}``.

    The returned app's ``state.stopping`` is an :class:`asyncio.Event` that, once set
    from the server's event loop, closes every connection a ``hang`` or ``drip`` fault
    is holding, so the server can stop at once; :mod:`etl_assets.demo.server` sets it.
    """
    stopping = asyncio.Event()

    async def health(request: Request) -> Response:
        return _json({"ok": True})

    async def faults(request: Request) -> Response:
        if request.method == "GET":
            return _json([fault.to_dict() for fault in source.faults()])
        if request.method == "DELETE":
            return _json({"removed": source.clear_faults()})
        try:
            payload = json.loads(await request.body())
            items = payload if isinstance(payload, list) else [payload]
            parsed = [Fault.from_dict(item) for item in items]
        except (ValueError, TypeError, RecursionError) as exc:
            return _json({"error": f"invalid fault: {exc}"}, 400)
        for fault in parsed:
            source.add_fault(fault)
        return _json({"added": len(parsed)}, 201)

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            return _json({"removed": source.clear_requests()})
        return _json([record.to_dict() for record in source.requests(request.query_params.get("path"))])

    async def latency(request: Request) -> Response:
        if request.method == "PUT":
            try:
                seconds = json.loads(await request.body())["seconds"]
                if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_LATENCY_SECONDS:
                    raise ValueError(f"seconds must be a number from 0 to {MAX_LATENCY_SECONDS:g}, got {seconds!r}")
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                return _json({"error": f"invalid latency: {exc}"}, 400)
            source.latency_seconds = float(seconds)
        return _json({"seconds": source.latency_seconds})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        body = _dumps({"error": exc.detail})
        return Response(body, status_code=exc.status_code, headers=exc.headers, media_type="application/json")

    app = _DemoStarlette(
        routes=[
            Route("/_control/health", health, methods=["GET"]),
            Route("/_control/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_control/requests", requests, methods=["GET", "DELETE"]),
            Route("/_control/latency", latency, methods=["GET", "PUT"]),
            Route("/{collection}", _DataEndpoint(source, stopping), methods=["GET"]),
            Route("/paged/{collection}", _DataEndpoint(source, stopping, "paged"), methods=["GET"]),
            Route("/cursor/{collection}", _DataEndpoint(source, stopping, "cursor"), methods=["GET"]),
            Route("/fhir/{collection}", _DataEndpoint(source, stopping, "fhir"), methods=["GET"]),
            Route("/keyset/{collection}", _DataEndpoint(source, stopping, "keyset"), methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.state.source = source
    app.state.stopping = stopping
    return app
