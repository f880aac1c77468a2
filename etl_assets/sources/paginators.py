"""Pagination strategies: what to ask for next, when to stop, and what to checkpoint.

A paginator is a small state machine in the style of dlt's ``BasePaginator``:
``next_request()`` gives the next page's request, ``read()`` finds the pointer to the page
after it in a response (on the parse worker thread), ``advance()`` takes what the page brought,
``has_next`` says whether to go on, and ``state()`` / the constructor's ``start`` let a run resume
exactly where an earlier one stopped. Every style keeps ``skip`` (records read so far) and
``page_index``; link and cursor styles also keep the next URL or cursor token.

The styles, named as in dlt: ``offset``, ``page_number``, ``json_link`` (next URL at a path in
the body), ``header_link`` (RFC 8288 ``Link: <...>; rel="next"``) and ``cursor`` (a token at a
path in the body, sent back as a parameter); and ``keyset`` (the last record's key sent back as
``id > last``), which cannot drift when records come and go during a run.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from etl_assets.sources.selectors import MISSING, parse_selector, select
from etl_assets.sources.spec import PaginatorSpec


@dataclass
class Position:
    """Where a run stands: records read, pages done, and the style's own pointer to the next page."""

    skip: int = 0
    page_index: int = 0
    next_url: str | None = None
    cursor: str | None = None
    exhausted: bool = False
    """The source has no page after this one: a resume has nothing left to read."""


    @classmethod
    def of(cls, checkpoint: Any) -> Position:
        """Where a stored checkpoint says a run stands (a :class:`Checkpoint`)."""
        return cls(checkpoint.skip, checkpoint.page_index, checkpoint.next_url, checkpoint.cursor,
                   checkpoint.exhausted)


OffsetState = Position
"""The name earlier code and tests use for an offset run's position."""


@dataclass(frozen=True)
class PageRequest:
    """One page to ask for: at record ``skip``, with ``params``, at ``url`` (``None``: the endpoint)."""

    skip: int
    params: dict[str, Any] = field(default_factory=dict)
    url: str | None = None


class PointerError(ValueError):
    """A page whose pointer to the next one is unusable (the run names the page and fails)."""


class Paginator:
    """The interface every style implements; the defaults suit styles that read one page at a time."""

    fetches_ahead = False

    def __init__(self, spec: PaginatorSpec, start: Position | None = None) -> None:
        self.spec = spec
        start = start or Position()
        self.skip = start.skip
        self.page_index = start.page_index
        self.has_next = True
        self.total_exceeded = False
        self.last_total: int | None = None
        self.stopped_because: str | None = None
        """Why a loop guard of the style stopped the run, for the run's warnings; ``{pointer}``
        stands for the repeated pointer, which the run shows only with its secrets masked."""
        self.repeated: str | None = None

    @property
    def believes_total(self) -> bool:
        """Whether the source's total says more records are still to come."""
        return False

    def _limit_params(self) -> dict[str, Any]:
        return {self.spec.limit_param: self.spec.limit} if self.spec.limit_param else {}

    def next_request(self) -> PageRequest:
        raise NotImplementedError

    def known_needed(self, skip: int) -> bool:
        return False

    def request_at(self, skip: int) -> PageRequest:
        raise NotImplementedError(f"{type(self).__name__} reads one page at a time")

    def read(self, body: Any, headers: Any, url: str, records: list[Any]) -> str | None:
        """The pointer to the page after this one (a URL or a cursor), or ``None``."""
        return None

    def advance(self, count: int, total: int | None, pointer: str | None) -> None:
        raise NotImplementedError

    def state(self) -> Position:
        return Position(skip=self.skip, page_index=self.page_index)

    def _step(self, count: int, total: int | None) -> None:
        self.skip += count
        self.page_index += 1
        self.last_total = total


class OffsetPaginator(Paginator):
    """``?offset=S&limit=L`` paging that advances by the rows actually returned.

    Stopping rules, in order:

    * an empty page ends the run;
    * while the source's total is believable, the run goes on until ``skip`` reaches it,
      even over short pages (an API that caps the page size loses nothing);
    * a ``skip`` that lands exactly on the total ends the run without an extra request;
    * once more records arrived than the total promised, the total is only an estimate
      and a short page (fewer than ``limit`` rows) ends the run instead;
    * without a total, a short page ends the run.
    """

    fetches_ahead = True

    @property
    def believes_total(self) -> bool:
        return self.last_total is not None and not self.total_exceeded and self.skip < self.last_total

    def request_params(self, skip: int | None = None) -> dict[str, Any]:
        """The query for the page at ``skip`` (the next one by default)."""
        return {self.spec.offset_param: self.skip if skip is None else skip, self.spec.limit_param: self.spec.limit}

    def next_request(self) -> PageRequest:
        return self.request_at(self.skip)

    def request_at(self, skip: int) -> PageRequest:
        return PageRequest(skip, self.request_params(skip))

    def known_needed(self, skip: int) -> bool:
        """Whether a page at ``skip`` is sure to be needed, so it may be fetched ahead.

        Only a believable total says so; without one, or once the source sent more than its
        total promised, pages are asked for one at a time past the next.
        """
        return self.last_total is not None and not self.total_exceeded and skip < self.last_total

    def advance(self, count: int, total: int | None, pointer: str | None = None) -> None:
        """Account for a page of ``count`` rows whose body or headers said ``total``."""
        self._step(count, total)
        if count == 0:
            self.has_next = False
            return
        if total is not None and not self.total_exceeded:
            if self.skip < total:
                return
            if self.skip == total:
                self.has_next = False
                return
            self.total_exceeded = True
        if count < self.spec.limit:
            self.has_next = False


class PageNumberPaginator(Paginator):
    """``?page=N`` paging from ``base_page``; the total (``total_path``/``total_header``) counts
    pages or records (``total_is``). Without a total an empty page ends the run, and the loop
    guard ends a source that repeats its last page past the end (json-server 1.0 does)."""

    def _page(self) -> int:
        return self.spec.base_page + self.page_index

    @property
    def believes_total(self) -> bool:
        return self.last_total is not None and self._remaining(self.last_total) > 0

    def _remaining(self, total: int) -> int:
        if self.spec.total_is == "records":
            return total - self.skip
        return total - self.page_index

    def next_request(self) -> PageRequest:
        return PageRequest(self.skip, {self.spec.page_param: self._page(), **self._limit_params()})

    def advance(self, count: int, total: int | None, pointer: str | None = None) -> None:
        self._step(count, total)
        if count == 0:
            self.has_next = False
        elif total is not None:
            self.has_next = self._remaining(total) > 0
        # Without a total only an empty page (or the loop guard) ends the run, as in dlt: a
        # short page may be an API capping the page size, not the last page.


class _PointerPaginator(Paginator):
    """Styles whose next page is named by the page before: a URL or a cursor token.

    A pointer this run already followed stops the run (a source that links a page to
    itself, or cycles, would otherwise loop until the time budget), unless ``stop_on_repeat`` is
    off for APIs whose cursor legitimately stays the same (a scroll id): then the key rule and
    ``max_pages_without_progress`` of the loop guard decide."""

    kind = "pointer"

    def __init__(self, spec: PaginatorSpec, start: Position | None = None) -> None:
        super().__init__(spec, start)
        self.pointer = self._start_pointer(start or Position())
        self.seen: set[str] = {self.pointer} if self.pointer else set()

    def _start_pointer(self, start: Position) -> str | None:
        raise NotImplementedError

    def advance(self, count: int, total: int | None, pointer: str | None) -> None:
        self._step(count, total)
        if count == 0 or not pointer:
            self.has_next = False
            self.pointer = None
            return
        if pointer in self.seen and self.spec.stop_on_repeat:
            self.has_next = False
            self.repeated = pointer
            self.stopped_because = (
                f"the {self.kind} after page {self.page_index} was already followed in this run "
                "({pointer}); the source repeats itself, so the run stops here"
            )
            self.pointer = None
            return
        self.seen.add(pointer)
        self.pointer = pointer


class _LinkPaginator(_PointerPaginator):
    """Styles that follow a next URL; the first request is the endpoint with the page size."""

    kind = "next link"

    def _start_pointer(self, start: Position) -> str | None:
        return start.next_url

    def next_request(self) -> PageRequest:
        if self.pointer is None:
            return PageRequest(self.skip, self._limit_params())
        return PageRequest(self.skip, {}, self.pointer)

    def state(self) -> Position:
        return Position(skip=self.skip, page_index=self.page_index, next_url=self.pointer)


class JSONLinkPaginator(_LinkPaginator):
    """The next page's URL at ``next_url_path`` in the body (``next``, ``links.next``, or a FHIR
    Bundle's ``link[relation=next].url``); no URL, an empty one or null ends the run."""

    def __init__(self, spec: PaginatorSpec, start: Position | None = None) -> None:
        super().__init__(spec, start)
        assert spec.next_url_path is not None
        self.selector = parse_selector(spec.next_url_path)

    def read(self, body: Any, headers: Any, url: str, records: list[Any]) -> str | None:
        found = select(body, self.selector)
        return urljoin(url, found.strip()) if isinstance(found, str) and found.strip() else None


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split at ``separator`` where it is not inside ``<...>`` or a quoted string."""
    parts, current, quoted, bracket, escaped = [], [], False, False, False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"' and not bracket:
            quoted = not quoted
        elif char == "<" and not quoted:
            bracket = True
        elif char == ">" and not quoted:
            bracket = False
        elif char == separator and not quoted and not bracket:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_link_header(value: str) -> dict[str, str]:
    """``rel`` value to URL from an RFC 8288 ``Link`` header: commas and semicolons inside
    quoted parameters are respected, only a link's first ``rel`` counts (RFC 8288, 3.3), and the
    first link of each relation wins."""
    links: dict[str, str] = {}
    for link in _split_outside_quotes(value, ","):
        target, *params = _split_outside_quotes(link, ";")
        target = target.strip()
        if not (target.startswith("<") and target.endswith(">")):
            continue
        for param in params:
            name, _, raw = param.partition("=")
            if name.strip().lower() != "rel":
                continue
            for rel in raw.strip().strip('"').split():
                links.setdefault(rel.lower(), target[1:-1].strip())
            break
    return links


class HeaderLinkPaginator(_LinkPaginator):
    """The next page's URL in the ``Link`` header (``rel="next"``, or ``links_next_key``), as
    GitHub and json-server 0.17 send it; no such link ends the run."""

    def read(self, body: Any, headers: Any, url: str, records: list[Any]) -> str | None:
        values = headers.get_list("link") if hasattr(headers, "get_list") else [headers.get("link") or ""]
        links = parse_link_header(", ".join(v for v in values if v))
        found = links.get(self.spec.links_next_key.lower())
        return urljoin(url, found) if found else None


class CursorPaginator(_PointerPaginator):
    """An opaque token at ``cursor_path`` in the body, sent back as ``cursor_param``; no token,
    an empty one or null ends the run."""

    kind = "cursor"

    def __init__(self, spec: PaginatorSpec, start: Position | None = None) -> None:
        super().__init__(spec, start)
        assert spec.cursor_path is not None
        self.selector = parse_selector(spec.cursor_path)

    def _start_pointer(self, start: Position) -> str | None:
        return start.cursor

    def next_request(self) -> PageRequest:
        params = self._limit_params()
        if self.pointer is not None:
            params[self.spec.cursor_param] = self.pointer
        return PageRequest(self.skip, params)

    def read(self, body: Any, headers: Any, url: str, records: list[Any]) -> str | None:
        return _token(select(body, self.selector))

    def state(self) -> Position:
        return Position(skip=self.skip, page_index=self.page_index, cursor=self.pointer)


class KeysetPaginator(CursorPaginator):
    """Keyset paging: the next page is asked for as ``key_param`` greater than the last record's
    ``key_path`` (``?id_gt=120``). Unlike offsets it cannot drift when records are added or
    removed during a run, so it is the style to choose where the API can filter and sort by a
    unique key; the API must return records in that key's order."""

    kind = "key"

    def __init__(self, spec: PaginatorSpec, start: Position | None = None) -> None:
        Paginator.__init__(self, spec, start)
        start = start or Position()
        self.pointer = start.cursor
        self.seen = {self.pointer} if self.pointer else set()
        assert spec.cursor_path is not None
        self.selector = parse_selector(spec.cursor_path)

    def read(self, body: Any, headers: Any, url: str, records: list[Any]) -> str | None:
        """The last record's key; a page that has records but whose last one has no usable key
        cannot be continued from, which is an error rather than the end of the source."""
        if not records:
            return None
        found = select(records[-1], self.selector)
        token = _token(found)
        if token is None:
            shown = "nothing" if found is MISSING else repr(found)[:80]
            raise PointerError(
                f"keyset paging: the page's last record has no usable {self.spec.cursor_path!r} to continue "
                f"after (found {shown})"
            )
        return token


def _token(found: Any) -> str | None:
    """A cursor or key value as the text sent back, or ``None`` when there is none usable
    (missing, null, empty, a boolean, a non-finite number, an object or a list)."""
    if isinstance(found, bool) or found == "":
        return None
    if isinstance(found, int | str) or (isinstance(found, float) and math.isfinite(found)):
        return str(found)
    return None


PAGINATORS: dict[str, type[Paginator]] = {
    "offset": OffsetPaginator,
    "page_number": PageNumberPaginator,
    "json_link": JSONLinkPaginator,
    "header_link": HeaderLinkPaginator,
    "cursor": CursorPaginator,
    "keyset": KeysetPaginator,
}


def build_paginator(spec: PaginatorSpec, start: Position | None = None) -> Paginator:
    return PAGINATORS[spec.type](spec, start)


class LoopGuard:
    """Stops a run that reads nothing new: a source that repeats its last page past the end
    (field case C2), or cycles through pages it already served.

    A page makes progress when it brings at least one record key not read in this run (the
    keys of the last ``window`` records are remembered, which bounds memory on long runs: a
    window of 100,000 held about 20 MB once full, an eighth of a run's peak RSS). When
    the source gave no believable total, the first page without progress ends the run; while a
    total says more is to come (records may have shifted under offset paging), the run reads on
    and stops after ``max_pages`` pages in a row without progress, whatever the style.
    """

    def __init__(self, stop_on_repeat: bool, max_pages: int, window: int = 20_000) -> None:
        self.stop_on_repeat = stop_on_repeat
        self.max_pages = max_pages
        self.window = window
        self.without_progress = 0
        self._counts: dict[str, int] = {}
        self._pages: deque[list[str]] = deque()
        self._remembered = 0

    def check(self, keys: list[str], total_says_more: bool) -> str | None:
        """Account for a page's keys; return why the run must stop before writing it, or ``None``."""
        if not keys:
            return None
        counts = self._counts
        if any(key not in counts for key in keys):
            self.without_progress = 0
            self._remember(keys)
            return None
        self.without_progress += 1
        if self.stop_on_repeat and not total_says_more:
            return "it brought no record not already read in this run"
        if self.without_progress >= self.max_pages:
            return (
                f"{self.without_progress} pages in a row brought no record not already read in this run "
                f"(max_pages_without_progress={self.max_pages})"
            )
        return None

    def _remember(self, keys: list[str]) -> None:
        counts = self._counts
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        self._pages.append(keys)
        self._remembered += len(keys)
        while self._remembered > self.window and len(self._pages) > 1:
            oldest = self._pages.popleft()
            self._remembered -= len(oldest)
            for key in oldest:
                left = counts[key] - 1
                if left:
                    counts[key] = left
                else:
                    del counts[key]
